-- Share of classified turns with a satisfaction / dissatisfaction signal, model vs lexical prior.
select
    count(*) as feedback_turns,
    count(*) filter (where sat) as sat_turns,
    count(*) filter (where dsat) as dsat_turns,
    count(*) filter (where failed) as failed_turns,
    count(*) filter (where lexical_sat) as lexical_sat_turns,
    count(*) filter (where lexical_dsat) as lexical_dsat_turns,
    round(avg(case when sat or dsat then 1.0 else 0.0 end), 3) as share_with_signal
from {{ ref('feedback_turns') }}
