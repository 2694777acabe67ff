-- Step 3b: the judge compares each candidate's answer with the baseline's, in both orders (candidate as
-- A, then as B), with the example's checklist and without it, on the 5-point scale A++, A+, A=B, B+, B++.
-- `llm_judge` scores the five verdicts as labels, so a judgment is always one of them (or NULL on error).
{{ config(materialized='table') }}
{% set models = var('eval_models', ['default', 'policy']) %}
{% set baseline = var('eval_baseline', models[0]) %}

with answers as (
    select * from {{ ref('eval_answers') }}
),
comparisons as (
    select
        e.conversation_id,
        e.feedback_turn,
        right(e.transcript, {{ var('eval_judge_prompt_chars', 1500) }}) as transcript,
        e.checklist_text,
        c.model as candidate,
        b.model as baseline,
        c.answer as candidate_answer,
        b.answer as baseline_answer
    from {{ ref('eval_set') }} as e
    join answers as c on c.conversation_id = e.conversation_id and c.feedback_turn = e.feedback_turn
    join answers as b on b.conversation_id = e.conversation_id and b.feedback_turn = e.feedback_turn
    where b.model = '{{ baseline }}' and c.model <> b.model
),
settings as (
    select * from (values ('checklist', 'AB'), ('checklist', 'BA'), ('none', 'AB'), ('none', 'BA'))
        as s(mode, judge_order)
),
judged as (
    select
        c.*,
        s.mode,
        s.judge_order,
        llm_judge(
            c.transcript,
            case when s.judge_order = 'AB' then c.candidate_answer else c.baseline_answer end,
            case when s.judge_order = 'AB' then c.baseline_answer else c.candidate_answer end,
            case when s.mode = 'checklist' then c.checklist_text end,
            model := '{{ var("eval_judge", "judge") }}'
        ) as judgment
    from comparisons as c
    cross join settings as s
)
select
    conversation_id,
    feedback_turn,
    candidate,
    baseline,
    mode,
    judge_order,
    judgment.verdict as verdict,
    judgment.probability as probability,
    -- the candidate's result: win 1, tie 0.5, loss 0 (it is A in order AB, B in order BA)
    case
        when judgment.verdict is null then null
        when judgment.verdict = 'A=B' then 0.5
        when starts_with(judgment.verdict, 'A') = (judge_order = 'AB') then 1.0
        else 0.0
    end::double as candidate_outcome,
    -- the judge's expected points for the candidate (A++ = 2 ... B++ = -2, read from its side)
    case when judge_order = 'AB' then judgment.score else -judgment.score end as candidate_score,
    judgment.probabilities as probabilities
from judged
