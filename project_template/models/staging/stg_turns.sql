-- One row per turn, in the canonical shape: conversation_id, turn_index (0-based), role, content.
with raw as (
    select id as conversation_id, conversations
    from {{ source('logs', 'conversations') }}
),
turns as (
    select
        conversation_id,
        generate_subscripts(conversations, 1) - 1 as turn_index,
        unnest(conversations) as turn
    from raw
)
select
    conversation_id,
    cast(turn_index as integer) as turn_index,
    {{ canonical_role('turn."from"') }} as role,
    turn.value as content,
    length(turn.value) as char_length
from turns
