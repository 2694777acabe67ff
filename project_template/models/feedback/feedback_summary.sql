-- Share of feedback turns with a satisfaction / dissatisfaction signal (the table behind a plot).
select
    count(*) as feedback_turns,
    count(*) filter (where sat) as sat_turns,
    count(*) filter (where dsat) as dsat_turns,
    round(avg(case when sat or dsat then 1 else 0 end), 3) as share_with_signal
from {{ ref('feedback_lexical') }}
