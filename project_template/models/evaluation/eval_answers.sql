-- Step 3a: every evaluated model answers the held-out prompts (the conversation alone, no preferences).
-- The models are the var `eval_models` (names under llm.models or roles; the first is the baseline the
-- others are compared with). Each gets its own literal `model := '...'`, so a model trained by a training
-- target (llm.models.NAME.trained_from) makes this model depend on that target.
{{ config(materialized='table') }}
{% set models = var('eval_models', ['default', 'policy']) %}

with examples as (
    select conversation_id, feedback_turn, transcript
    from {{ ref('eval_set') }}
    order by conversation_id, feedback_turn
    limit {{ var('eval_max_examples', 8) }}
)
{% for m in models %}
{% if not loop.first %}union all{% endif %}
select
    conversation_id,
    feedback_turn,
    '{{ m }}' as model,
    llm_generate(
        {{ reply_prompt('transcript') }},
        options := '{{ generation_options(var("eval_max_answer_tokens", 64)) }}',
        model := '{{ m }}'
    ) as answer
from examples
{% endfor %}
