"""Lexical and structural features of a user turn: the inputs of the calibrated feedback classifier.

Each feature is a number in [0, 1] computed from the user turn and the assistant reply it follows (its
end, or for the turn-to-reply features the whole reply as the template caps it: shared words and
identifiers, whether it holds code), and two from the user turn before the reply (a re-sent or re-stated
request), read from the history as the template caps it. Most are cue patterns (thanks, "that's wrong",
"make it shorter"); a few are structural (the reply ended by asking the user something, the turn is short,
it talks about the user). `CATEGORY_CUES` maps rubric categories to the patterns that name them, so a
positive side can say *which* categories it saw.

Pure Python and fast (hundreds of turns per second on a busy 2-core CPU): on a CPU this is what the small default
model cannot beat (see the README's classifier table), and on a GPU the full rubric prompt replaces it.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import Path

from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS

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

# Turn-to-reply cues (issue 7's error analysis on the tuning half: most missed DSAT turns are short requests
# to change the previous output, or questions about a part of it). Each is matched in the user's opening
# (`_HEAD_CHARS`), and most count only in a short turn: a long turn is usually the next task with pasted text.
_HEAD_CHARS = 200
_EDIT_START = re.compile(
    r"^\s*(please\s+|can you\s+|could you\s+|would you\s+|now\s+|ok(ay)?,?\s+|great,?\s+|so\s+)?(re-?write"
    r"|rephrase|revise|redo|re-?do|make|change|add|remove|delete|include|shorten|expand|modify|update|fix|improve"
    r"|simplify|adjust|replace|rename|convert|reformat|format|use|try|put|move|split|combine|merge|sort|translate"
    r"|keep|drop|cut|reduce|increase|write (it|this|that|them) |do (it|this|that) )",
    _I,
)
_REFER_BACK = re.compile(
    r"\b(it|this|that|these|those|them|the above|above|previous|earlier|your (code|answer|response|reply|example"
    r"|script|list|story|text|version|solution)|the (code|script|story|text|list|table|function|query|example|essay"
    r"|poem|email|letter|answer|response|program|class|component|file))\b",
    _I,
)
_YOU_DID = re.compile(
    r"\b(you (said|wrote|gave|provided|mentioned|used|forgot|missed|left|did ?n'?o?t|didn'?t|have ?n'?o?t|haven'?t"
    r"|only|just)|your (code|answer|response|reply|example|script|solution|last|previous))\b",
    _I,
)
_NO_START = re.compile(r"^\s*(no|nope|not (quite|really|exactly|what)|wrong|actually|i mean|i meant)\b", _I)
_ERROR_TEXT = re.compile(
    r"(traceback|error:|exception|errno|line \d+|stack ?trace|undefined|not defined|cannot find|can'?t find"
    r"|unexpected|syntaxerror|typeerror|valueerror|nameerror|is not (visible|working|showing|displayed)"
    r"|doesn'?t (show|appear|display|compile|run|work)|not (visible|showing)|i get|i got|getting (an? )?(error"
    r"|exception)|returns? (an? )?(error|nothing|empty|null|none))",
    _I,
)
_EXAMPLE_REQUEST = re.compile(
    r"\b(example|examples|code|script|sample|snippet|implementation|sources?|references?|citations?|studies"
    r"|specific|specifics|details?|steps)\b",
    _I,
)
_COMPARATIVE = re.compile(
    r"\b(more|less|shorter|longer|simpler|easier|harder|better|bigger|smaller|clearer|fewer|funnier|friendlier"
    r"|stronger|softer|detailed)\b",
    _I,
)
_CONSTRAINT = re.compile(
    r"\b(without|instead|only|also|too|as well|but (with|without|make|use|in)|in (python|java|javascript|c\+\+|c#"
    r"|english|french|spanish|german|korean|chinese|one sentence|\d+ words?)|with (a |an |the )?(loop|table|bullet"
    r"|headings?))\b",
    _I,
)
_CONTINUE = re.compile(r"^\s*(please\s+)?(continue|go on|keep going|carry on|finish|more please|next|proceed)\b", _I)
_TEMPLATE = re.compile(r"^\s*(web search results|\[?instructions?\]?:|act as|you are|i want you to act|ignore all)", _I)
_STORY = re.compile(
    r"\b(let'?s write (that|this) (whole )?scene|write (that|this) scene|write the next|next chapter)\b", _I
)
_WH_START = re.compile(r"^\s*(what|how|why|who|when|where|which|is|are|does|do|can|could|should|would|will)\b", _I)
_BARE_MORE = re.compile(
    r"^\s*(more|tell me more|elaborate|explain more|go deeper|more details?|in more detail|expand)\W*$", _I
)
_ANOTHER = re.compile(
    r"\b(another|a different|other) (answer|version|response|try|approach|way|one|title|name|option)s?\b"
    r"|\btry (again|something)|\bmake (something|it) up\b|\bone more time\b",
    _I,
)
_LENGTH_FORMAT = re.compile(
    r"\b(one sentence|\d+ (words?|characters?|sentences?|paragraphs?|lines?)|(a )?long(er)? (story|version|answer)"
    r"|short(er)? (version|answer)|in (a )?table|table ?wise|as a table|bullet points?|raw markdown|markdown"
    r"|in (english|korean|french|spanish|german|chinese|japanese))\b",
    _I,
)
_OPTION_PICK = re.compile(
    r"\b(the (first|second|third|fourth|last) (one|option|idea|choice)|option (\d|[a-d])\b|i('ll| will) (go with"
    r"|take|choose|pick)|let'?s go with)",
    _I,
)
# Compliance (dev-set batch 4, pre-registered in wfsql/eval/data/README.md §6): the reply asks the user for
# material ("please paste the text") and the turn supplies it; the reply ends on a real question and the turn
# answers with a statement; a stock opener ("How can I help you today?") asks for nothing to comply with.
_MATERIAL_REQUEST = re.compile(
    r"(please|could you|can you|kindly|feel free to)\s+(provide|paste|share|send|upload|post|include|give me)"
    r"|(provide|paste|share|send) (me )?(the|your|a|some|more) (text|code|details|information|article|document|"
    r"content|data|essay|story|script|file|list|example|question|link|transcript|requirements|context)",
    _I,
)
_STOCK_OPENER = re.compile(
    r"^\s*(hello[!.,]?\s*|hi[!.,]?\s*)?(how (can|may) i (help|assist) you( today)?\??|what can i (do|help you with)"
    r"( today)?\??|awaiting (your )?(prompt|instructions?|input))",
    _I,
)
_MATERIAL_MIN_CHARS = 80
_STOCK_OPENER_MAX_CHARS = 200
# "Rewrite and improve: <pasted text>": what follows the colon is material for the next task, not the user's words.
_PASTE_PREFIX = re.compile(r"^\s*[^\n:]{0,60}:\s")
_STOPWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as text
        "a an the and or but if then so to of in on at for with from by as is are was were be been being it this that "
        "these those i you he she we they me my your our their them his her its do does did can could would should "
        "will shall may might must have has had not no yes please what which who whom how why when where there here "
        "all any some more most other such only own same than too very just also about into over under again further "
        "once up down out off now let lets let's give me write make create"
    ).split()
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
# Re-sent requests (error analysis of the tuning half: many missed `revision` turns repeat the user turn
# before the reply, which the labelling rules count as re-stating the request).
_ROLE_LINE = re.compile(r"(?:^|\n)(user|assistant|system): ")
_ANY_WORD = re.compile(r"\w+")
_IDENTIFIER = re.compile(r"\b([a-z]+[A-Z][A-Za-z0-9]*|[A-Za-z]+_[A-Za-z0-9_]+|[A-Za-z]+\.[A-Za-z_]+\(?)\b")

_TURN_CUES: dict[str, re.Pattern[str]] = {
    "edit_start": _EDIT_START,
    "edit_start_short": _EDIT_START,
    "edit_start_long": _EDIT_START,
    "refer_back_short": _REFER_BACK,
    "you_did": _YOU_DID,
    "no_start": _NO_START,
    "error_text": _ERROR_TEXT,
    "example_request_prose": _EXAMPLE_REQUEST,
    "comparative_short": _COMPARATIVE,
    "constraint_short": _CONSTRAINT,
    "continue_start": _CONTINUE,
    "template": _TEMPLATE,
    "story_scene": _STORY,
    "wh_start": _WH_START,
    "bare_more": _BARE_MORE,
}

FEATURES: tuple[str, ...] = (
    *_CUES,
    "reply_asks",
    "reply_question_end",
    "reply_game_prompt",
    "short_positive",
    "first_person_density",
    "log_length",
    "short",
    *_TURN_CUES,
    "reply_overlap",
    "identifier_overlap",
    "reply_code",
    "long_turn",
    "very_short",
    "another",
    "length_format_short",
    "option_pick",
    "paste_prefix_long",
    "repeat_similarity",
    "restates_request",
    "reply_requests_material",
    "answers_reply_question",
    "reply_stock_opener",
)
"""Feature names, in the order of `features()`; the calibrated weights file lists them too."""

CATEGORY_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "sat": {
        "gratitude": ("thanks",),
        "learning": ("learning",),
        "compliance": ("reply_asks", "reply_question_end", "option_pick", "reply_requests_material"),
        "praise": ("praise",),
        "personal_details": ("first_person",),
        "humor": ("humor",),
        "acknowledgment": ("ack",),
        "positive_closure": ("closure",),
        "getting_there": ("getting_there",),
    },
    "dsat": {
        "negative_feedback": ("negative",),
        "revision": ("revise_verb", "again", "ignored", "edit_start_short", "another", "no_start", "restates_request"),
        "factual_error": ("wrong", "error_text"),
        "unrealistic_expectation": ("unrealistic",),
        "no_engagement": (),
        "ignored": ("ignored", "no_start"),
        "lower_quality": ("lower_quality",),
        "insufficient_detail": ("more", "example_request_prose", "bare_more"),
        "style": ("style", "length_format_short"),
    },
}
"""Which cues name which rubric category, for the category lists of a positive side."""


def features(user_turn: str, assistant_reply: str, history: str = "") -> dict[str, float]:
    """All `FEATURES` of one turn, each in [0, 1]; `history` is the conversation before the reply (capped here)."""
    user = user_turn.strip()
    reply = assistant_reply.strip()
    tail = reply[-400:]
    out = {name: float(pattern.search(user) is not None) for name, pattern in _COMPILED.items()}
    paste_prefix = _PASTE_PREFIX.match(user)
    pasted = paste_prefix is not None and len(user) > _HEAD_CHARS
    opening = paste_prefix.group(0) if pasted and paste_prefix is not None else user[:_OPENING_CHARS]
    for opening_only in ("thanks", "praise"):
        out[opening_only] = float(_COMPILED[opening_only].search(opening) is not None)
    game = _GAME_PROMPT.search(tail) is not None
    # A game's "What do you do?" hands the turn over; the move that answers it is not compliance (dev-set rules).
    out["reply_asks"] = float(not game and _REPLY_ASKS.search(tail) is not None and "?" in tail)
    out["reply_question_end"] = float(not game and tail.endswith("?") and _GENERIC_OFFER.search(tail) is None)
    out["reply_game_prompt"] = float(game)
    out["short_positive"] = float(len(user) < 60 and (out["thanks"] or out["praise"] or out["ack"]) > 0)
    out["first_person_density"] = min(len(_PRONOUNS.findall(user)), 6) / 6
    out["log_length"] = math.log1p(len(user)) / 8
    out["short"] = float(len(user) < 40)
    head, short = user[:_HEAD_CHARS], len(user) < _HEAD_CHARS
    edit = _EDIT_START.search(user) is not None
    out["edit_start"] = float(edit)
    out["edit_start_short"] = float(edit and short)
    out["edit_start_long"] = float(edit and not short)
    out["refer_back_short"] = float(short and _REFER_BACK.search(head) is not None)
    out["you_did"] = float(_YOU_DID.search(user[:300]) is not None)
    out["no_start"] = float(_NO_START.search(user) is not None)
    out["error_text"] = float(_ERROR_TEXT.search(user[:1500]) is not None)
    out["example_request_prose"] = float(short and "```" not in reply and _EXAMPLE_REQUEST.search(head) is not None)
    out["comparative_short"] = float(short and _COMPARATIVE.search(head) is not None)
    out["constraint_short"] = float(short and _CONSTRAINT.search(head) is not None)
    for name in ("continue_start", "template", "story_scene", "wh_start", "bare_more"):
        out[name] = float(_TURN_CUES[name].search(user) is not None)
    words = _content_words(user[:600])
    out["reply_overlap"] = len(words & _content_words(reply)) / len(words) if words else 0.0
    out["identifier_overlap"] = float(bool(set(_IDENTIFIER.findall(user[:600])) & set(_IDENTIFIER.findall(reply))))
    out["reply_code"] = float("```" in reply)
    out["long_turn"] = float(len(user) > 500)
    out["very_short"] = float(len(user) < 20)
    out["another"] = float(_ANOTHER.search(head) is not None)
    out["length_format_short"] = float(short and _LENGTH_FORMAT.search(head) is not None)
    out["option_pick"] = float(_OPTION_PICK.search(user[:300]) is not None)
    out["paste_prefix_long"] = float(pasted)
    similarity, containment, previous_words = repeat_overlap(user, history)
    out["repeat_similarity"] = similarity
    # Every word of a substantive previous request recurs in a turn of similar size (a re-sent or re-stated
    # request: `revision`), unless the turn asks to continue (always neither).
    restated = previous_words >= 6 and containment >= 0.95 and similarity >= 0.5
    out["restates_request"] = float(restated and not out["continue_start"])
    stock = len(reply) < _STOCK_OPENER_MAX_CHARS and _STOCK_OPENER.search(reply) is not None
    statement = "?" not in user[:300] and _WH_START.search(user) is None
    out["reply_requests_material"] = float(
        not stock and _MATERIAL_REQUEST.search(tail) is not None and len(user) >= _MATERIAL_MIN_CHARS
    )
    out["answers_reply_question"] = float(
        not game and not stock and tail.endswith("?") and _GENERIC_OFFER.search(tail) is None and statement
    )
    out["reply_stock_opener"] = float(stock)
    return out


def previous_user_turn(history: str) -> tuple[str, bool]:
    """The user turn the reply answered, as the template's history cap leaves it, and whether it is whole.

    `history` holds `role: content` lines; only its last `TEMPLATE_MAX_HISTORY_CHARS` characters are read
    (what `feedback_candidates` passes), so a long previous turn may survive only as its tail (then `False`).
    """
    tail = history[-TEMPLATE_MAX_HISTORY_CHARS:]
    roles = list(_ROLE_LINE.finditer(tail))
    if not roles:  # the cap cut inside the last turn, which is the user's request the reply answered
        return tail.strip(), False
    last = roles[-1]
    return (tail[last.end() :].strip(), True) if last.group(1) == "user" else ("", True)


def repeat_overlap(user_turn: str, history: str) -> tuple[float, float, int]:
    """(Jaccard similarity of the word sets of the user turn and the previous user turn, the share of the
    previous turn's words found in the user turn, the previous turn's distinct words). When the history cap cut
    the previous turn, the similarity compares tails of equal length: a re-sent request scores near 1."""
    previous, whole = previous_user_turn(history)
    b = {w.lower() for w in _ANY_WORD.findall(previous)}
    if not b:
        return 0.0, 0.0, 0
    user = user_turn.strip()
    a_all = {w.lower() for w in _ANY_WORD.findall(user)}
    a = a_all if whole else {w.lower() for w in _ANY_WORD.findall(user[-len(previous) :])}
    similarity = len(a & b) / len(a | b) if a else 0.0
    return similarity, len(a_all & b) / len(b), len(b)


def _content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS}


def categories(side: str, values: Mapping[str, float]) -> list[str]:
    """Rubric categories of `side` whose cues fired, in rubric order."""
    return [name for name, cues in CATEGORY_CUES[side].items() if any(values.get(cue, 0.0) > 0 for cue in cues)]


def code_fingerprint(source: str | None = None) -> str:
    """A short hash of what this module computes: its code without comments and docstrings, plus the history cap.

    The calibrated classifier's weights file names its fit, not the code that turns text into features; a cue
    pattern or a `CATEGORY_CUES` entry edited without a refit changes answers all the same. Cached answers
    are keyed by this too, so such an edit recomputes them, while comments and docstrings do not. The code is
    hashed as `ast.unparse` writes it: the same on Python 3.11, 3.12 and 3.13 (checked; `ast.dump` differs), so a
    cache shared across them stays warm. Without a readable source file (a frozen install) the cue tables stand in.
    """
    if source is None:
        try:
            source = Path(__file__).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):  # no source, or only a compiled .pyc where it should be
            tables = (_CUES, CATEGORY_CUES, FEATURES, TEMPLATE_MAX_HISTORY_CHARS)
            return "t" + hashlib.sha256(repr(tables).encode()).hexdigest()[:7]
    tree = ast.parse(source)
    for node in ast.walk(tree):  # a bare string is a no-op: docstrings, and the notes after FEATURES and the like
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [  # type: ignore[attr-defined]
                stmt for stmt in body
                if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str))
            ] or [ast.Pass()]
    payload = ast.unparse(tree) + f"\n# history_chars={TEMPLATE_MAX_HISTORY_CHARS}"
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


CODE_FINGERPRINT = code_fingerprint()
"""This module's fingerprint as imported: what the running code computes, whatever the file says later."""
