"""Step 3d: win rate of each candidate against the baseline, with and without the checklist: a tie counts
half, both orders count, and a percentile bootstrap over examples gives the 95% interval (seeded, so a
rebuild gives the same interval). Also the position bias: the share of examples whose two orders disagree.
The math is wfsql.eval.winrate (tested there)."""

import pyarrow as pa

from wfsql.eval.winrate import summarise

COLUMNS = {
    "candidate": pa.string(), "baseline": pa.string(), "mode": pa.string(), "examples": pa.int64(),
    "missing": pa.int64(), "wins": pa.int64(), "ties": pa.int64(), "losses": pa.int64(),
    "win_rate": pa.float64(), "ci_low": pa.float64(), "ci_high": pa.float64(), "position_bias": pa.float64(),
    "first_position_share": pa.float64(), "consistent_win_rate": pa.float64(), "mean_score": pa.float64(),
    "resamples": pa.int64(), "seed": pa.int64(),
}


def model(wf, con):
    wf.config(materialized="table")
    resamples = int(wf.var("eval_bootstrap_resamples", 2000))
    seed = int(wf.var("eval_seed", 0))
    rows = wf.ref("eval_outcomes").project(
        "candidate, baseline, mode, outcome_ab, outcome_ba, score_ab, score_ba, conversation_id, feedback_turn"
    ).order("conversation_id, feedback_turn").fetchall()
    groups = {}
    for r in rows:
        groups.setdefault((r[0], r[1], r[2]), []).append(r)
    out = []
    for (candidate, baseline, mode), members in sorted(groups.items()):
        result = summarise(
            [(r[3], r[4]) for r in members], [(r[5], r[6]) for r in members], resamples=resamples, seed=seed
        )
        out.append({"candidate": candidate, "baseline": baseline, "mode": mode, **result.as_dict(),
                    "resamples": resamples, "seed": seed})
    return pa.Table.from_pylist(out, schema=pa.schema(COLUMNS))
