"""Win rates of pairwise judgments in both orders, with a bootstrap 95% interval and position bias.

Every example is judged twice: once with the candidate as answer A (order AB) and once as answer B (order
BA). Each judgment gives the candidate an outcome: 1 win, 0.5 tie, 0 loss (`wfsql.llm.judge.outcome`).

- win rate: the mean outcome over all judgments of examples judged in both orders (a tie counts half);
- 95% interval: percentile bootstrap over examples (an example's two judgments stay together), seeded;
- position bias: the share of examples whose two orders disagree (the verdicts, read for the candidate,
  differ); `first_position_share` is the share of non-tie judgments that favoured whichever answer was A
  (0.5 for a judge without a positional preference);
- consistent win rate: the same mean with every disagreeing example counted as a tie.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class WinRate:
    examples: int  # examples judged in both orders (the ones counted)
    missing: int  # examples with a failed or absent judgment in either order (left out)
    wins: int  # over judgments: 2 per example
    ties: int
    losses: int
    win_rate: float | None
    ci_low: float | None
    ci_high: float | None
    position_bias: float | None
    first_position_share: float | None
    consistent_win_rate: float | None
    mean_score: float | None  # the candidate's mean expected points (+2 much better ... -2 much worse), both orders

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_interval(
    values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
) -> tuple[float, float] | tuple[None, None]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement, seeded)."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return None, None
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    step = max(1, 2_000_000 // data.size)  # bound the index matrix's memory
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = data[rng.integers(0, data.size, size=(stop - start, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarise(
    outcomes: Sequence[tuple[float | None, float | None]],
    scores: Sequence[tuple[float | None, float | None]] | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> WinRate:
    """`outcomes[i]` = the candidate's outcome on example i as A (order AB) and as B (order BA);
    `scores[i]` = the judge's expected points for the candidate in each order (A++ = 2 ... B++ = -2 read from
    the candidate's side; optional, for `mean_score`, where a judge's constant pull toward A cancels)."""
    complete = [(i, float(ab), float(ba)) for i, (ab, ba) in enumerate(outcomes) if ab is not None and ba is not None]
    judgments = [o for _, ab, ba in complete for o in (ab, ba)]
    per_example = [(ab + ba) / 2 for _, ab, ba in complete]
    n = len(complete)
    wins = sum(1 for o in judgments if o > 0.5)
    losses = sum(1 for o in judgments if o < 0.5)
    ties = len(judgments) - wins - losses
    if not n:
        return WinRate(0, len(outcomes), 0, 0, 0, None, None, None, None, None, None, None)
    low, high = bootstrap_interval(per_example, resamples=resamples, level=level, seed=seed)
    disagree = sum(1 for _, ab, ba in complete if ab != ba)
    # who won each non-tie judgment, by position: AB the candidate is A, BA the candidate is B
    first = sum(1 for _, ab, ba in complete for won_a in (ab > 0.5, ba < 0.5) if won_a)
    decided = wins + losses
    consistent = [(ab + ba) / 2 if ab == ba else 0.5 for _, ab, ba in complete]
    mean_score = None
    if scores is not None:
        points = [
            (float(s_ab) + float(s_ba)) / 2
            for i, _, _ in complete
            for s_ab, s_ba in [scores[i]]
            if s_ab is not None and s_ba is not None and not (math.isnan(s_ab) or math.isnan(s_ba))
        ]
        mean_score = sum(points) / len(points) if points else None
    return WinRate(
        examples=n,
        missing=len(outcomes) - n,
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=sum(per_example) / n,
        ci_low=low,
        ci_high=high,
        position_bias=disagree / n,
        first_position_share=first / decided if decided else None,
        consistent_win_rate=sum(consistent) / n,
        mean_score=mean_score,
    )
