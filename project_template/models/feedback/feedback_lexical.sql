-- A high-precision lexical prior for the feedback rubric: explicit thanks/praise (SAT) and explicit
-- complaints or corrections (DSAT). The LLM classifier refines this; it never replaces it silently.
select
    conversation_id,
    turn_index,
    {{ lexical_sat('user_turn') }} as sat,
    {{ lexical_dsat('user_turn') }} as dsat
from {{ ref('feedback_candidates') }}
