"""The pairwise judge's answer: a verdict on the 5-point scale of design.md section 1, step 3.

`llm_judge(prompt, answer_a, answer_b [, checklist])` asks which answer better serves the prompt (and,
with a checklist, the user's stated preferences). The answer is one of `VERDICTS`, scored as labels (never
decoded), so it always has this module's shape:

    {"verdict": "A+", "probability": 0.41, "score": 0.62, "probabilities": [p(A++), p(A+), p(A=B), p(B+), p(B++)]}

`score` is the expected preference for A on the scale's points (A++ = 2 ... B++ = -2). This module is pure
Python: the backend scores the labels, `judge_value` turns the probabilities into the answer, and the
helpers below turn verdicts into a candidate's outcome (win 1, tie 0.5, loss 0) whichever side it was on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

VERDICTS: tuple[str, ...] = ("A++", "A+", "A=B", "B+", "B++")
"""A much better, A better, tie, B better, B much better (design.md: A++, A+, A=B, B+, B++)."""
POINTS: dict[str, int] = {"A++": 2, "A+": 1, "A=B": 0, "B+": -1, "B++": -2}
MEANINGS: dict[str, str] = {
    "A++": "Reply A is much better than reply B",
    "A+": "Reply A is better than reply B",
    "A=B": "the two replies are equally good",
    "B+": "Reply B is better than reply A",
    "B++": "Reply B is much better than reply A",
}
_SWAPPED = {"A++": "B++", "A+": "B+", "A=B": "A=B", "B+": "A+", "B++": "A++"}


@dataclass(frozen=True)
class JudgeInput:
    """One pairwise comparison: the conversation, the two answers, and the checklist (None: judge without)."""

    prompt: str
    answer_a: str
    answer_b: str
    checklist: str | None = None


def judge_value(probabilities: Sequence[float]) -> dict[str, Any]:
    """The answer from the five verdict probabilities (in `VERDICTS` order, summing to 1)."""
    probs = [float(p) for p in probabilities]
    if len(probs) != len(VERDICTS):
        raise ValueError(f"expected {len(VERDICTS)} probabilities, got {len(probs)}")
    best = max(range(len(VERDICTS)), key=lambda k: (probs[k], -k))
    score = sum(p * POINTS[v] for p, v in zip(probs, VERDICTS, strict=True))
    return {"verdict": VERDICTS[best], "probability": probs[best], "score": score, "probabilities": probs}


def check_judge_value(value: Any) -> None:
    """Raise ValueError unless `value` is a well-formed judge answer."""
    if not isinstance(value, dict) or set(value) != {"verdict", "probability", "score", "probabilities"}:
        raise ValueError(f"judge value must have keys verdict, probability, score, probabilities: {value!r}")
    if value["verdict"] not in VERDICTS:
        raise ValueError(f"verdict {value['verdict']!r} is not one of {VERDICTS}")
    probs = value["probabilities"]
    if len(probs) != len(VERDICTS) or abs(sum(probs) - 1.0) > 1e-6 or min(probs) < 0:
        raise ValueError(f"probabilities must be {len(VERDICTS)} non-negative numbers summing to 1: {probs!r}")
    if not -2.0 - 1e-9 <= value["score"] <= 2.0 + 1e-9:
        raise ValueError(f"score must lie in [-2, 2]: {value['score']!r}")


def swap(verdict: str) -> str:
    """The same judgment with A and B exchanged (A+ ↔ B+)."""
    return _SWAPPED[verdict]


def outcome(verdict: str | None, candidate_is_a: bool) -> float | None:
    """The candidate's result of one judgment: 1 win, 0.5 tie, 0 loss (None when the judgment failed)."""
    if verdict is None:
        return None
    points = POINTS[verdict] if candidate_is_a else -POINTS[verdict]
    return 1.0 if points > 0 else 0.5 if points == 0 else 0.0
