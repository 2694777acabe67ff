-- Step 1 input: every user turn t >= 2 with the assistant reply it answers and the history before it.
-- History and reply are capped (vars) to what a small CPU model can read quickly; the user turn being
-- classified is never cut. Raise the caps when `classifier` points at a bigger model on a GPU.
{{ config(materialized='table') }}
with turns as (
    select t.*
    from {{ ref('stg_turns') }} as t
    join {{ ref('stg_conversations') }} as c using (conversation_id)
),
ordered as (
    select
        conversation_id,
        turn_index,
        role,
        content,
        lag(role) over w as previous_role,
        lag(content) over w as assistant_reply,
        string_agg(role || ': ' || content, chr(10)) over (
            partition by conversation_id order by turn_index
            rows between unbounded preceding and 2 preceding
        ) as history
    from turns
    window w as (partition by conversation_id order by turn_index)
)
select
    conversation_id,
    turn_index,
    right(coalesce(history, ''), {{ var('max_history_chars', 600) }}) as history,
    case
        when length(assistant_reply) <= {{ var('max_reply_chars', 1200) }} then assistant_reply
        else left(assistant_reply, {{ var('max_reply_chars', 1200) * 2 // 3 }}) || ' [...] '
             || right(assistant_reply, {{ var('max_reply_chars', 1200) // 3 }})
    end as assistant_reply,
    content as user_turn
from ordered
where role = 'user' and previous_role = 'assistant'
