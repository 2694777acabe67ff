-- Turns per rubric category (the table behind the category distribution plot).
with categories as (
    select 'SAT' as side, unnest(sat_categories) as category from {{ ref('feedback_turns') }}
    union all
    select 'DSAT' as side, unnest(dsat_categories) as category from {{ ref('feedback_turns') }}
)
select side, category, count(*) as turns
from categories
group by side, category
order by side, turns desc, category
