-- Per-conversation rollup: did the user express satisfaction / dissatisfaction, and how.
select
    conversation_id,
    count(*) as feedback_turns,
    bool_or(coalesce(sat, false)) as has_sat,
    bool_or(coalesce(dsat, false)) as has_dsat,
    list_distinct(flatten(list(sat_categories))) as sat_categories,
    list_distinct(flatten(list(dsat_categories))) as dsat_categories
from {{ ref('feedback_turns') }}
group by conversation_id
