-- The preference pairs to train on: both variants, cleaned. Dropped: chosen = rejected, empty or
-- refused replies, duplicates, on-policy pairs the judge did not prefer, evaluation conversations.
{{ config(materialized='table') }}

with candidates as (
    select conversation_id, feedback_turn, prompt, preferences, chosen, rejected, variant
    from {{ ref('expert_pairs') }}
    union all by name
    select conversation_id, feedback_turn, prompt, preferences, chosen, rejected, variant
    from {{ ref('onpolicy_pairs') }}
    where judge_prefers_chosen
),
clean as (
    select *
    from candidates
    where chosen is not null and rejected is not null
      and trim(chosen) <> '' and trim(rejected) <> ''
      and trim(chosen) <> trim(rejected)
      and not {{ looks_like_refusal('chosen') }}
      and conversation_id not in (select conversation_id from {{ ref('eval_split') }})
)
select *
from clean
qualify row_number() over (partition by md5(cast(prompt as varchar) || chosen || rejected) order by variant) = 1
