-- On-policy variant: the policy model writes both replies, with and without the preferences; the judge
-- compares them against the preference checklist in both orders, and the pair is kept only when it
-- prefers the preference-following reply both times.
{{ config(materialized='incremental', unique_key=['conversation_id', 'feedback_turn']) }}

with todo as (
    select *
    from {{ ref('pair_prompts') }}
    where conversation_id not in (select conversation_id from {{ ref('eval_split') }})
    {% if is_incremental() %}
      and conversation_id not in (select conversation_id from {{ this }})
    {% endif %}
),
generated as (
    select
        *,
        llm_generate({{ reply_prompt('transcript', 'preferences') }},
                     options := '{{ generation_options(var("max_reply_tokens", 128)) }}', model := 'policy') as with_prefs,
        llm_generate({{ reply_prompt('transcript') }},
                     options := '{{ generation_options(var("max_reply_tokens", 128)) }}', model := 'policy') as without_prefs
    from todo
),
judged as (
    select
        *,
        llm_classify({{ judge_prompt('transcript', 'preferences', 'with_prefs', 'without_prefs') }}, ['A', 'B'],
                     instruction := 'Which reply better satisfies the checklist? Answer A or B.', model := 'judge') as ab,
        llm_classify({{ judge_prompt('transcript', 'preferences', 'without_prefs', 'with_prefs') }}, ['A', 'B'],
                     instruction := 'Which reply better satisfies the checklist? Answer A or B.', model := 'judge') as ba
    from generated
    where with_prefs is not null and without_prefs is not null
)
select
    conversation_id,
    feedback_turn,
    prompt,
    preferences,
    without_prefs as rejected,
    with_prefs as chosen,
    'on_policy' as variant,
    ab.label = 'A' and ba.label = 'B' as judge_prefers_chosen,
    ab.label <> ba.label as judge_consistent
from judged
