"""Structural sanity filters over canonical conversations, as Python predicates and DuckDB SQL.

Ingestion keeps every well-formed conversation; whether a conversation is *usable* for feedback mining
is a separate, adjustable decision, so it lives here as filters. Each Python predicate has a SQL twin
that gives the same answer on the canonical tables (``{prefix}_turns``, ``{prefix}_conversations``).
SQL builders take a relation name or subquery and return text meant to be wrapped in a macro or CTE.
"""

from __future__ import annotations

from collections.abc import Sequence


def roles_alternate(roles: Sequence[str]) -> bool:
    """True when turns go user, assistant, user, ... after at most one leading system turn.

    The feedback step reads "assistant reply, then the user's reaction"; conversations with two user
    turns in a row or a system message in the middle break that reading. The last turn may be either.
    """
    start = 1 if roles and roles[0] == "system" else 0
    if len(roles) <= start:
        return False
    return all(role == ("user" if k % 2 == 0 else "assistant") for k, role in enumerate(roles[start:]))


def roles_alternate_sql(turns: str = "turns") -> str:
    """Query over a turn table giving ``(conversation_id, roles_alternate BOOLEAN)`` per conversation.

    Relies on ``turn_index`` being 0-based and gap-free, as ingestion guarantees.
    """
    return f"""SELECT conversation_id,
       bool_and(
         CASE WHEN role = 'system' THEN turn_index = 0
              WHEN (turn_index - has_system) % 2 = 0 THEN role = 'user'
              ELSE role = 'assistant' END
       ) AND count(*) FILTER (WHERE role <> 'system') > 0 AS roles_alternate
FROM (
  SELECT conversation_id, turn_index, role,
         max(CASE WHEN turn_index = 0 AND role = 'system' THEN 1 ELSE 0 END)
           OVER (PARTITION BY conversation_id) AS has_system
  FROM {turns}
) AS t
GROUP BY conversation_id"""


def has_min_user_turns(roles: Sequence[str], n: int) -> bool:
    """At least ``n`` user turns (feedback needs a user turn *after* an assistant reply, so n >= 2)."""
    return sum(1 for role in roles if role == "user") >= n


def min_user_turns_sql(n: int, column: str = "n_user_turns") -> str:
    """Boolean SQL over the conversation table, the twin of :func:`has_min_user_turns`."""
    return f"({column} >= {int(n)})"


def within_max_chars(contents: Sequence[str], max_chars: int) -> bool:
    """The whole conversation has at most ``max_chars`` characters (keeps LLM prompts bounded)."""
    return sum(len(text) for text in contents) <= max_chars


def conversation_chars_sql(turns: str = "turns") -> str:
    """Query giving ``(conversation_id, total_chars, max_turn_chars)`` per conversation."""
    return f"""SELECT conversation_id, sum(char_length) AS total_chars, max(char_length) AS max_turn_chars
FROM {turns}
GROUP BY conversation_id"""


def max_chars_sql(max_chars: int, column: str = "total_chars") -> str:
    """Boolean SQL, the twin of :func:`within_max_chars` on :func:`conversation_chars_sql` output."""
    return f"({column} <= {int(max_chars)})"
