-- Conversations kept for the pipeline: English, enough user turns to carry feedback, not absurdly long,
-- roles alternating (an optional system turn first).
with turns as (
    select * from {{ ref('stg_turns') }}
),
per_conversation as (
    select
        conversation_id,
        count(*) as n_turns,
        count(*) filter (where role = 'user') as n_user_turns,
        sum(char_length) as n_chars,
        string_agg(content, ' ' order by turn_index) filter (where role = 'user') as user_text,
        bool_and(
            case when role = 'system' then turn_index = 0
                 when role = 'user' then turn_index % 2 = (case when first_role = 'system' then 1 else 0 end)
                 else turn_index % 2 = (case when first_role = 'system' then 0 else 1 end) end
        ) as roles_alternate
    from (select *, first(role order by turn_index) over (partition by conversation_id) as first_role from turns)
    group by conversation_id
)
select conversation_id, n_turns, n_user_turns, n_chars
from per_conversation
where n_user_turns >= {{ var('min_user_turns') }}
  and n_chars <= {{ var('max_conversation_chars') }}
  {% if var('require_alternating_roles', true) %}and roles_alternate{% endif %}
  {% if var('english_only', true) %}and {{ is_english('user_text') }}{% endif %}
  {% if var('drop_flagged', true) %}
  and conversation_id not in (  -- toxic / redacted flags, where the source format has them (WildChat)
      select conversation_id from {{ source('logs', 'conversations') }}
      where coalesce(toxic, false) or coalesce(redacted, false)
  )
  {% endif %}
