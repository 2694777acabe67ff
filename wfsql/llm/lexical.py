"""Lexical and structural features of a user turn: the inputs of the calibrated feedback classifier.

Each feature is a number in [0, 1] computed from the user turn and the end of the assistant reply it
follows. Most are cue patterns (thanks, "that's wrong", "make it shorter"); a few are structural (the reply
ended by asking the user something, the turn is short, it talks about the user). `CATEGORY_CUES` maps
rubric categories to the patterns that name them, so a positive side can say *which* categories it saw.

Pure Python and fast (tens of thousands of turns per second): on a CPU this is what the small default
model cannot beat (see the README's classifier table), and on a GPU the full rubric prompt replaces it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

_I = re.IGNORECASE

_CUES: dict[str, str] = {
    "thanks": r"\b(thanks?|thank you|thx|appreciate[ds]?|cheers)\b",
    "praise": r"\b(great|perfect|awesome|excellent|amazing|brilliant|fantastic|wonderful|love (it|this)|nice|cool"
    r"|good (job|work|questions?|feedback|plan|idea|answer))\b|[😊👍🙏😀😄🎉❤]",
    "ack": r"^\s*(ok(ay)?|got it|i see|understood|makes sense|alright|sure|yes|yeah|yep|correct|right)\b[.!, ]*$",
    "learning": r"^\s*so\b|\b(so (it|this|that) means|if i understand|do you mean|i understand|now i (get|understand)"
    r"|right\?\s*$)",
    "humor": r"\b(lol|haha+|lmao|rofl|funny)\b|[😂🤣]",
    "closure": r"\b(that'?s all|that is all|all good|we'?re done|bye|have a (nice|good) day)\b",
    "getting_there": r"\b(closer|almost( there)?|getting there|better,? but|much better|that (fixed|worked))\b",
    "first_person": r"\b(i am|i'm|i have|i've|my|we are|our)\b",
    "wrong": r"\b(wrong|incorrect|not (correct|right|true|accurate)|mistake|error|bug|doesn'?t work|does not work"
    r"|isn'?t working|not working|you forgot|forgot|contradict|missing|you (just )?did|already"
    r"|doesn'?t (compile|run)|exception|traceback|failed|fails)\b",
    "negative": r"\b(useless|terrible|dumb|stupid|bad|not helpful|unhelpful|nonsense|annoying|not what|too far"
    r"|not detailed)\b",
    "revise_verb": r"^\s*(please\s+|can you\s+|could you\s+|now\s+|ok,?\s+)?(re-?write|rephrase|revise|redo|re-?do"
    r"|make (it|them|this|that)|change|add|remove|delete|include|shorten|expand|modify|update|fix|improve"
    r"|simplify|slim|bulk|translate|convert|reformat|format|use|describe it|do (that|it|this) again|try again)\b",
    "again": r"\b(again|instead|differently|another way|other ways|rather|how about|what about)\b",
    "style": r"\b(shorter|longer|concise|brief|too (long|short|formal|informal)|tone|funny|funnier|formal|casual"
    r"|table|bullet|format|translate|english|language|style|words?)\b",
    "more": r"\b(more (detail|details|specific|examples?|information|info|depth)|in detail|elaborate|expand"
    r"|explain|be more specific|give me (an |a )?(specific )?example|show me an example|example of)\b",
    "refer": r"\b(it|this|that|these|those|them|above|the (code|text|story|list|answer|response|script"
    r"|description|table|previous|last))\b",
    "ignored": r"\b(no,? i mean|i meant|not what i (asked|meant|wanted)|misunderstood|that'?s not what"
    r"|you didn'?t)\b",
    "lower_quality": r"\b(worse than|was better before|previous (one|answer|version) was better)\b",
    "unrealistic": r"\b(you can do it|just do it|i know you can|stop saying you can'?t)\b",
    "continue": r"^\s*(continue|go on|keep going|finish|more please|next)\b",
    "question": r"\?\s*$",
    "new_task": r"^\s*(now|next|also|then|write|create|generate|give me|list|what|how|why|who|when|where"
    r"|explain)\b",
}
_COMPILED = {name: re.compile(pattern, _I) for name, pattern in _CUES.items()}

# The reply asks the user for something specific (not the stock "let me know if you have questions").
_REPLY_ASKS = re.compile(
    r"(could you (please )?(provide|clarify|share|tell|specify|give)|can you (please )?(provide|clarify|share"
    r"|tell|specify)|please (provide|share|clarify|specify|tell)|which (one|option)|would you like|do you (want"
    r"|prefer|have)|what (is|are) your|let me know (which|what|your|the))",
    _I,
)
_GENERIC_OFFER = re.compile(r"(let me know if|if) you have any (other|further|more)? ?questions", _I)
_PRONOUNS = re.compile(r"\b(i|my|me|i'm|we|our)\b", _I)
# Games and role-play: the reply hands the turn back ("What do you do next?"); the answer is a move, not feedback.
_GAME_PROMPT = re.compile(r"what (do|would|will) you (want to |like to |wish to )?(do|say)( next)?\?\s*$", _I)
# Thanks and praise count where the user speaks, not inside a long text pasted for the next task.
_OPENING_CHARS = 120

FEATURES: tuple[str, ...] = (
    *_CUES,
    "reply_asks",
    "reply_question_end",
    "reply_game_prompt",
    "short_positive",
    "first_person_density",
    "log_length",
    "short",
)
"""Feature names, in the order of `features()`; the calibrated weights file lists them too."""

CATEGORY_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "sat": {
        "gratitude": ("thanks",),
        "learning": ("learning",),
        "compliance": ("reply_asks", "reply_question_end"),
        "praise": ("praise",),
        "personal_details": ("first_person",),
        "humor": ("humor",),
        "acknowledgment": ("ack",),
        "positive_closure": ("closure",),
        "getting_there": ("getting_there",),
    },
    "dsat": {
        "negative_feedback": ("negative",),
        "revision": ("revise_verb", "again", "ignored"),
        "factual_error": ("wrong",),
        "unrealistic_expectation": ("unrealistic",),
        "no_engagement": (),
        "ignored": ("ignored",),
        "lower_quality": ("lower_quality",),
        "insufficient_detail": ("more",),
        "style": ("style",),
    },
}
"""Which cues name which rubric category, for the category lists of a positive side."""


def features(user_turn: str, assistant_reply: str) -> dict[str, float]:
    """All `FEATURES` of one turn, each in [0, 1]."""
    user = user_turn.strip()
    tail = assistant_reply.strip()[-400:]
    out = {name: float(pattern.search(user) is not None) for name, pattern in _COMPILED.items()}
    for opening_only in ("thanks", "praise"):
        out[opening_only] = float(_COMPILED[opening_only].search(user[:_OPENING_CHARS]) is not None)
    out["reply_asks"] = float(_REPLY_ASKS.search(tail) is not None and "?" in tail)
    out["reply_question_end"] = float(tail.endswith("?") and _GENERIC_OFFER.search(tail) is None)
    out["reply_game_prompt"] = float(_GAME_PROMPT.search(tail) is not None)
    out["short_positive"] = float(len(user) < 60 and (out["thanks"] or out["praise"] or out["ack"]) > 0)
    out["first_person_density"] = min(len(_PRONOUNS.findall(user)), 6) / 6
    out["log_length"] = math.log1p(len(user)) / 8
    out["short"] = float(len(user) < 40)
    return out


def categories(side: str, values: Mapping[str, float]) -> list[str]:
    """Rubric categories of `side` whose cues fired, in rubric order."""
    return [name for name, cues in CATEGORY_CUES[side].items() if any(values.get(cue, 0.0) > 0 for cue in cues)]
