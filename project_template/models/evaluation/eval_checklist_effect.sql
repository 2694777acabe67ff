-- What the checklist changes: each candidate's win rate with and without it, and the share of examples
-- whose outcome changed when the judge saw the user's preferences.
with paired as (
    select
        candidate,
        baseline,
        conversation_id,
        feedback_turn,
        max(outcome) filter (where mode = 'checklist') as with_checklist,
        max(outcome) filter (where mode = 'none') as without_checklist
    from {{ ref('eval_outcomes') }}
    group by candidate, baseline, conversation_id, feedback_turn
)
select
    candidate,
    baseline,
    count(*) as examples,
    avg(with_checklist) as win_rate_with_checklist,
    avg(without_checklist) as win_rate_without_checklist,
    avg(with_checklist) - avg(without_checklist) as checklist_effect,
    avg(case when with_checklist <> without_checklist then 1.0 else 0.0 end) as share_changed
from paired
where with_checklist is not null and without_checklist is not null
group by candidate, baseline
