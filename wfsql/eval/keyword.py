"""A keyword classifier for the feedback rubric: the baseline to beat, and a high-precision prior.

Each category has a few patterns a user turn must contain to express it; anything else is neither.
It is fast and precise on explicit feedback ("thanks!", "that's wrong") and blind to implicit
feedback, which is what the model is for.
"""

from __future__ import annotations

import re
from typing import Any

_PATTERNS: dict[str, dict[str, str]] = {
    "sat": {
        "gratitude": r"\b(thanks?( you)?|thx|ty|appreciate[ds]?|cheers)\b",
        "praise": r"\b(great|perfect(ly)?|awesome|excellent|amazing|brilliant|fantastic|wonderful"
        r"|love (it|this)|nice)\b"
        r"|[😊👍🙏😀😄🎉❤]",
        "acknowledgment": r"^\s*(ok(ay)?|got it|i see|understood|makes sense|alright|sure)\b[.!]?\s*$",
        "learning": r"\b(now i (understand|get it)|that makes sense|i learned|so (it|this) means)\b",
        "positive_closure": r"\b(that'?s all|that is all|all good|we'?re done|bye|have a (nice|good) day)\b",
        "getting_there": r"\b(closer|almost( there)?|getting there|better,? but|much better)\b",
    },
    "dsat": {
        "factual_error": r"\b(wrong|incorrect|not (correct|right|true|accurate)|mistake|error|bug|doesn'?t work"
        r"|does not work|isn'?t working|not working|you forgot|contradict)\b",
        "negative_feedback": r"\b(useless|terrible|bad answer|not helpful|unhelpful|stupid|nonsense|annoying)\b",
        "revision": r"\b(try again|redo|rewrite|re-write|fix (it|this|that)|change (it|this|that)|instead|again"
        r"|revise|regenerate)\b",
        "style": r"\b(too (long|short|verbose|wordy|formal|informal)|shorter|more concise|less formal"
        r"|in (english|bullet points|a table)|simpler|simplify)\b",
        "insufficient_detail": r"\b(more (detail|details|specific|examples?|information|info|depth)|elaborate"
        r"|expand( on)?|be more specific|in detail|explain (more|further))\b",
        "ignored": r"\b(didn'?t answer|did not answer|not what i (asked|meant|wanted)|you misunderstood"
        r"|that'?s not what|no,? i (mean|meant|asked))\b",
        "lower_quality": r"\b(worse than|was better before|previous (one|answer) was better)\b",
        "unrealistic_expectation": r"\b(you can do it|just do it|i know you can|stop saying you can'?t)\b",
    },
}
_COMPILED = {side: {c: re.compile(p, re.IGNORECASE) for c, p in cats.items()} for side, cats in _PATTERNS.items()}


def keyword_signal(user_turn: str) -> dict[str, Any]:
    """The rubric struct for one user turn, from patterns alone."""
    sat = [c for c, pattern in _COMPILED["sat"].items() if pattern.search(user_turn)]
    dsat = [c for c, pattern in _COMPILED["dsat"].items() if pattern.search(user_turn)]
    return {"sat": bool(sat), "dsat": bool(dsat), "sat_categories": sat, "dsat_categories": dsat}
