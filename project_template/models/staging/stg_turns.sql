-- One row per turn in the canonical shape (conversation_id, turn_index, role, content, char_length),
-- from the conversation source wfsql ingested; records it could not read are in
-- source('logs', 'conversations_quarantine').
select
    conversation_id,
    turn_index,
    role,
    {% if var('scrub_pii', true) %}{{ scrub_pii('content') }}{% else %}content{% endif %} as content,
    char_length
from {{ source('logs', 'conversations_turns') }}
