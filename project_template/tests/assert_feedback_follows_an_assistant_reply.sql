-- Every feedback candidate must react to an assistant turn directly before it.
select c.conversation_id, c.turn_index
from {{ ref('feedback_candidates') }} as c
left join {{ ref('stg_turns') }} as t
  on t.conversation_id = c.conversation_id and t.turn_index = c.turn_index - 1
where t.role is distinct from 'assistant'
