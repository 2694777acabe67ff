-- One row per classified user turn: the model's rubric answer, next to the lexical prior.
-- A NULL signal (a failed LLM call, recorded in _wfsql.llm_cache) stays NULL: never a silent "no".
select
    s.conversation_id,
    s.turn_index,
    s.signal.sat as sat,
    s.signal.dsat as dsat,
    s.signal.sat_categories as sat_categories,
    s.signal.dsat_categories as dsat_categories,
    l.sat as lexical_sat,
    l.dsat as lexical_dsat,
    s.signal is null as failed
from {{ ref('feedback_signals') }} as s
join {{ ref('feedback_lexical') }} as l using (conversation_id, turn_index)
