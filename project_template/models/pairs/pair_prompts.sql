-- Step 2b: for each DSAT turn with preferences, the prompt (every turn before the reply the user
-- rejected, ending with a user turn), the rejected reply, and the preferences.
with turns as (
    select * from {{ ref('stg_turns') }}
),
prefs as (
    select * from {{ ref('user_preferences') }} where len(preferences) > 0
)
select
    p.conversation_id,
    p.turn_index as feedback_turn,
    list({'role': t.role, 'content': t.content} order by t.turn_index)
        filter (where t.turn_index < p.turn_index - 1) as prompt,
    right(string_agg(t.role || ': ' || t.content, chr(10) order by t.turn_index)
        filter (where t.turn_index < p.turn_index - 1), {{ var('max_prompt_chars', 3000) }}) as transcript,
    max(t.content) filter (where t.turn_index = p.turn_index - 1) as rejected,
    p.preferences
from prefs as p
join turns as t on t.conversation_id = p.conversation_id
group by p.conversation_id, p.turn_index, p.preferences
having count(*) filter (where t.turn_index < p.turn_index - 1) > 0
