-- Conversations kept for the pipeline: enough user turns to carry feedback, not absurdly long.
select
    conversation_id,
    count(*) as n_turns,
    count(*) filter (where role = 'user') as n_user_turns,
    sum(char_length) as n_chars
from {{ ref('stg_turns') }}
group by conversation_id
having count(*) filter (where role = 'user') >= {{ var('min_user_turns') }}
   and sum(char_length) <= {{ var('max_conversation_chars') }}
