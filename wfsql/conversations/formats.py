"""Normalise one parsed record of a known conversation format into canonical turns.

Supported shapes (a record is a JSON object / Parquet row):

* ShareGPT: ``{"id": ..., "conversations": [{"from": "human", "value": "..."}, ...]}``
* OpenAI messages: ``{"messages": [{"role": "user", "content": "..." | [parts]}, ...]}``
* WildChat: ``{"conversation_hash": ..., "conversation": [{"role": ..., "content": ...}], "language": ...}``

Policy: a record is either loaded exactly as it is or quarantined as a whole with the first problem
found. Dropping one bad turn would silently change what the user and the assistant said to each other,
and every later step (feedback detection, preference pairs) reads turn order and neighbours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from wfsql.conversations.types import Problem


@dataclass(frozen=True, slots=True)
class FormatSpec:
    """Where a format keeps its turn list and, inside each turn, the speaker and the text."""

    name: str
    turns_key: str
    role_key: str
    content_key: str
    alt_role_key: str
    alt_content_key: str


SHAREGPT = FormatSpec("sharegpt", "conversations", "from", "value", "role", "content")
OPENAI = FormatSpec("openai", "messages", "role", "content", "from", "value")
WILDCHAT = FormatSpec("wildchat", "conversation", "role", "content", "from", "value")

FORMATS: dict[str, FormatSpec] = {spec.name: spec for spec in (SHAREGPT, OPENAI, WILDCHAT)}
FORMAT_NAMES: tuple[str, ...] = ("auto", *FORMATS)

#: Speaker labels seen in the wild, mapped to the three canonical roles (matched case-insensitively).
ROLE_ALIASES: dict[str, str] = {
    **dict.fromkeys(("human", "user", "prompter", "person", "customer"), "user"),
    **dict.fromkeys(
        ("gpt", "assistant", "chatgpt", "bard", "bing", "bot", "model", "ai", "claude", "gemini", "gpt4", "gpt-4"),
        "assistant",
    ),
    **dict.fromkeys(("system", "developer"), "system"),
}

#: Keys that may hold the source's own conversation id, most specific first.
ID_KEYS: tuple[str, ...] = ("id", "conversation_id", "conversation_hash")

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
_MAX_ROLE_IN_REASON = 40


@dataclass(slots=True)
class Normalized:
    """A record that passed every check, in canonical form."""

    source_format: str
    source_id: str | None
    roles: list[str]
    contents: list[str]
    n_user_turns: int
    n_chars: int
    language: str | None
    toxic: bool | None
    redacted: bool | None
    model: str | None
    metadata: str


def detect_format(record: dict[str, Any]) -> FormatSpec | None:
    """Pick the format from the key that holds a list of turns; None if no known key is present."""
    for spec in (SHAREGPT, WILDCHAT, OPENAI):
        if spec.turns_key in record:
            return spec
    return None


def source_id_of(record: Any) -> tuple[str | None, str | None]:
    """The source's own id (as text) and the key it came from, or ``(None, None)``."""
    if not isinstance(record, dict):
        return None, None
    for key in ID_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value, key
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value), key
    return None, None


def content_hash_id(roles: list[str], contents: list[str]) -> str:
    """Deterministic id from the canonical turns: the same dialogue gets the same id in any format."""
    digest = hashlib.sha1(orjson.dumps([roles, contents]), usedforsecurity=False).hexdigest()
    return f"h_{digest}"


def normalize(record: Any, spec: FormatSpec | None) -> Normalized | Problem:
    """Check and convert one record; ``spec=None`` means detect the format from the record's keys."""
    if not isinstance(record, dict):
        return Problem("not_an_object", f"record is a JSON {type(record).__name__}, expected an object")
    if spec is None:
        spec = detect_format(record)
        if spec is None:
            keys = ", ".join(sorted(map(str, record))[:8])
            return Problem(
                "unknown_format",
                f"no 'conversations', 'conversation' or 'messages' list (keys: {keys})",
            )
    turns = record.get(spec.turns_key)
    if turns is None:
        return Problem(f"missing_field:{spec.turns_key}", f"{spec.name} record has no '{spec.turns_key}'")
    if not isinstance(turns, list):
        return Problem(
            f"invalid_field:{spec.turns_key}",
            f"'{spec.turns_key}' is a {type(turns).__name__}, expected a list of turns",
        )
    if not turns:
        return Problem("no_turns", f"'{spec.turns_key}' is empty")

    checked = _check_turns(turns, spec)
    if isinstance(checked, Problem):
        return checked
    roles, contents, n_user = checked

    source_id, id_key = source_id_of(record)
    consumed = {spec.turns_key}
    if id_key is not None:
        consumed.add(id_key)
    language = _take(record, "language", str, consumed)
    toxic = _take(record, "toxic", bool, consumed)
    redacted = _take(record, "redacted", bool, consumed)
    model = _take(record, "model", str, consumed)
    return Normalized(
        source_format=spec.name,
        source_id=source_id,
        roles=roles,
        contents=contents,
        n_user_turns=n_user,
        n_chars=sum(map(len, contents)),
        language=language,
        toxic=toxic,
        redacted=redacted,
        model=model,
        metadata=_metadata(record, consumed),
    )


def _check_turns(turns: list[Any], spec: FormatSpec) -> tuple[list[str], list[str], int] | Problem:
    # Hot loop (one pass per turn of every record): locals are bound once and the turn's position is
    # only computed (as len(roles)) when reporting a problem.
    roles: list[str] = []
    contents: list[str] = []
    role_key, content_key = spec.role_key, spec.content_key
    alias = ROLE_ALIASES.get
    add_role, add_content = roles.append, contents.append
    for turn in turns:
        if type(turn) is not dict:
            return Problem("invalid_field:turn", f"turn {len(roles)} is a {type(turn).__name__}, expected an object")
        label = turn.get(role_key)
        if label is None:
            label = turn.get(spec.alt_role_key)
        role = alias(label) if type(label) is str else None
        if role is None:
            role = _role_or_problem(label, role_key, len(roles))
            if type(role) is Problem:
                return role
        content = turn.get(content_key, _MISSING)
        if type(content) is not str:
            if content is _MISSING:
                content = turn.get(spec.alt_content_key, _MISSING)
            if type(content) is not str:
                content = _content_text(content, turn, len(roles), content_key)
                if type(content) is Problem:
                    return content
        if not content or content.isspace():
            return Problem("empty_content", f"turn {len(roles)} ({role}) has empty content")
        add_role(role)
        add_content(content)
    return roles, contents, roles.count("user")


def _role_or_problem(label: Any, key: str, position: int) -> str | Problem:
    """Slow path of role mapping: missing, non-text, differently cased or unknown labels."""
    if label is None:
        return Problem(f"missing_field:{key}", f"turn {position} has no '{key}'")
    if not isinstance(label, str):
        return Problem(f"invalid_field:{key}", f"turn {position} has a non-text '{key}'")
    role = ROLE_ALIASES.get(label.strip().lower())
    if role is None:
        return Problem(f"unknown_role:{label.strip()[:_MAX_ROLE_IN_REASON]}", f"turn {position} has role {label!r}")
    return role


class _Missing:
    pass


_MISSING: Any = _Missing()


def _content_text(content: Any, turn: dict[str, Any], position: int, key: str) -> str | Problem:
    """Text of a non-string content: OpenAI part lists are joined with newlines; anything else is a problem."""
    if content is _MISSING:
        return Problem(f"missing_field:{key}", f"turn {position} has no '{key}'")
    if content is None:
        if turn.get("tool_calls") or turn.get("function_call"):
            return Problem("unsupported_content:tool_calls", f"turn {position} carries tool calls, not text")
        return Problem("empty_content", f"turn {position} has null content")
    if isinstance(content, list):
        texts: list[str] = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif (
                isinstance(part, dict)
                and isinstance(part.get("text"), str)
                and (part.get("type") is None or part.get("type") in _TEXT_PART_TYPES)
            ):
                texts.append(part["text"])
            else:
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                return Problem(
                    f"unsupported_content:{str(kind)[:_MAX_ROLE_IN_REASON]}",
                    f"turn {position} has a non-text content part of type {kind!r}",
                )
        return "\n".join(texts)
    return Problem(f"invalid_field:{key}", f"turn {position} has {type(content).__name__} content")


def _take(record: dict[str, Any], key: str, kind: type, consumed: set[str]) -> Any:
    """A typed record-level field; a value of another type stays in metadata instead of being coerced."""
    value = record.get(key)
    if type(value) is kind:
        consumed.add(key)
        return value
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


def _metadata(record: dict[str, Any], consumed: set[str]) -> str:
    if len(record) == len(consumed):
        return "{}"
    rest = {k: v for k, v in record.items() if k not in consumed}
    return orjson.dumps(rest, default=_json_default, option=orjson.OPT_NON_STR_KEYS).decode()
