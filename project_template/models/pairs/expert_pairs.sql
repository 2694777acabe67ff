-- Expert variant: rejected = the reply that drew DSAT; chosen = the generator model's reply, written
-- with the user's preferences and a safety instruction. Training conversations only.
{{ config(materialized='incremental', unique_key=['conversation_id', 'feedback_turn']) }}

select
    p.conversation_id,
    p.feedback_turn,
    p.prompt,
    p.preferences,
    p.rejected,
    llm_generate(
        {{ reply_prompt('p.transcript', 'p.preferences') }},
        options := '{{ generation_options(var("max_reply_tokens", 128)) }}',
        model := 'generator'
    ) as chosen,
    'expert' as variant
from {{ ref('pair_prompts') }} as p
where p.conversation_id not in (select conversation_id from {{ ref('eval_split') }})
{% if is_incremental() %}
  and p.conversation_id not in (select conversation_id from {{ this }})
{% endif %}
