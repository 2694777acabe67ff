-- Step 3c: both orders of each comparison side by side. `orders_agree` is false when the verdict flips
-- with the order of the answers (position bias); `outcome` averages the two (a tie counts half).
select
    conversation_id,
    feedback_turn,
    candidate,
    baseline,
    mode,
    max(verdict) filter (where judge_order = 'AB') as verdict_ab,
    max(verdict) filter (where judge_order = 'BA') as verdict_ba,
    max(candidate_outcome) filter (where judge_order = 'AB') as outcome_ab,
    max(candidate_outcome) filter (where judge_order = 'BA') as outcome_ba,
    max(candidate_score) filter (where judge_order = 'AB') as score_ab,
    max(candidate_score) filter (where judge_order = 'BA') as score_ba,
    (outcome_ab + outcome_ba) / 2 as outcome,
    outcome_ab = outcome_ba as orders_agree
from {{ ref('eval_judgments') }}
group by conversation_id, feedback_turn, candidate, baseline, mode
