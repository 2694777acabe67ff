"""The WildFeedback rubric (9 SAT + 9 DSAT categories) and the shape of a feedback answer.

Category names match design.md section 1; the one-line meanings are the prompt's definitions. This module
is pure Python: the backend scores each category with a yes/no question, `feedback_value` turns those
probabilities into the answer, and `FEEDBACK_JSON_SCHEMA` describes the same answer for backends (and the
benchmark baselines) that decode it as constrained JSON instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SAT_RUBRIC: dict[str, str] = {
    "gratitude": "thanks the assistant or compliments its reply",
    "learning": "shows interest in what it learned and builds on it",
    "compliance": "does what the assistant suggested or instructed",
    "praise": "uses enthusiastic positive words or emojis about the reply",
    "personal_details": "shares more about their own situation, showing trust",
    "humor": "jokes or shows amusement with the assistant",
    "acknowledgment": "confirms understanding or agreement, like 'ok, got it'",
    "positive_closure": "ends the conversation on a satisfied note",
    "getting_there": "signals progress: the reply moved them toward their goal",
}
DSAT_RUBRIC: dict[str, str] = {
    "negative_feedback": "says they are dissatisfied, frustrated or annoyed",
    "revision": "asks to redo or change the reply, or repeats the request",
    "factual_error": "points out a mistake, inaccuracy, bug or contradiction in the reply",
    "unrealistic_expectation": "refuses to accept a limitation the assistant stated",
    "no_engagement": "ignores the assistant's questions or suggestions",
    "ignored": "says the reply did not address the request at all",
    "lower_quality": "finds the reply worse than earlier replies",
    "insufficient_detail": "wants more specific or more complete information",
    "style": "objects to the length, tone, format or language of the reply",
}
SAT_CATEGORIES: tuple[str, ...] = tuple(SAT_RUBRIC)
DSAT_CATEGORIES: tuple[str, ...] = tuple(DSAT_RUBRIC)
ALL_CATEGORIES: tuple[str, ...] = SAT_CATEGORIES + DSAT_CATEGORIES

DEFAULT_THRESHOLD = 0.5
"""A category is reported when P(yes) / (P(yes) + P(no)) exceeds this."""

FEEDBACK_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sat_categories": {"type": "array", "items": {"enum": list(SAT_CATEGORIES)}, "maxItems": 4},
        "dsat_categories": {"type": "array", "items": {"enum": list(DSAT_CATEGORIES)}, "maxItems": 4},
    },
    "required": ["sat_categories", "dsat_categories"],
    "additionalProperties": False,
}
"""The category lists as constrained JSON, for decoding-based classifiers (see `feedback_from_lists`)."""


def rubric_text() -> str:
    """The rubric as prompt lines: `- name: meaning`, SAT block then DSAT block."""
    sat = "\n".join(f"- {name}: {meaning}" for name, meaning in SAT_RUBRIC.items())
    dsat = "\n".join(f"- {name}: {meaning}" for name, meaning in DSAT_RUBRIC.items())
    return f"Signs of satisfaction (SAT):\n{sat}\n\nSigns of dissatisfaction (DSAT):\n{dsat}"


def checklist(yes: set[str] | frozenset[str]) -> str:
    """The answer format of the scoring prompt: one `- category: yes|no` line per category, rubric order."""
    return "\n".join(f"- {name}: {'yes' if name in yes else 'no'}" for name in ALL_CATEGORIES)


def feedback_value(p_yes: Mapping[str, float], threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The answer from per-category P(yes): lists in rubric order, booleans derived from the lists."""
    sat = [name for name in SAT_CATEGORIES if p_yes[name] > threshold]
    dsat = [name for name in DSAT_CATEGORIES if p_yes[name] > threshold]
    return {"sat": bool(sat), "dsat": bool(dsat), "sat_categories": sat, "dsat_categories": dsat}


def feedback_from_lists(decoded: Mapping[str, Any]) -> dict[str, Any]:
    """The answer from decoded category lists (deduplicated, rubric order, unknown names dropped)."""
    sat = [name for name in SAT_CATEGORIES if name in set(decoded.get("sat_categories") or ())]
    dsat = [name for name in DSAT_CATEGORIES if name in set(decoded.get("dsat_categories") or ())]
    return {"sat": bool(sat), "dsat": bool(dsat), "sat_categories": sat, "dsat_categories": dsat}


def check_feedback_value(value: Any) -> None:
    """Raise ValueError unless `value` is a well-formed, self-consistent feedback answer."""
    if not isinstance(value, dict) or set(value) != {"sat", "dsat", "sat_categories", "dsat_categories"}:
        raise ValueError(f"feedback value must have keys sat, dsat, sat_categories, dsat_categories: {value!r}")
    for side, names in (("sat", SAT_CATEGORIES), ("dsat", DSAT_CATEGORIES)):
        listed = value[f"{side}_categories"]
        if not isinstance(listed, list) or any(name not in names for name in listed):
            raise ValueError(f"{side}_categories holds names outside the rubric: {listed!r}")
        if value[side] is not bool(listed):
            raise ValueError(f"{side} is {value[side]!r} but {side}_categories is {listed!r}")
