-- Training pairs and the evaluation split must not share a conversation.
select p.conversation_id
from {{ ref('pairs') }} as p
join {{ ref('eval_split') }} as e using (conversation_id)
