"""Conversation ingestion: ShareGPT / OpenAI / WildChat files in, canonical Arrow tables out.

A pure-Python library with no dependency on the rest of wfsql; docs/sources.md describes formats,
quarantine policy, ids, filters and measured speed.

Names are imported on first use (PEP 562): pyarrow and duckdb take most of a second to import, and
commands such as ``wfsql init --sample`` or ``wfsql compile`` should not pay for that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wfsql.conversations.duck import load_into_duckdb
    from wfsql.conversations.filters import (
        conversation_chars_sql,
        has_min_user_turns,
        max_chars_sql,
        min_user_turns_sql,
        roles_alternate,
        roles_alternate_sql,
        within_max_chars,
    )
    from wfsql.conversations.formats import FORMAT_NAMES
    from wfsql.conversations.ingest import ingest
    from wfsql.conversations.language import english_score, english_score_sql, is_english, is_english_sql
    from wfsql.conversations.pii import scrub_pii, scrub_pii_sql
    from wfsql.conversations.sample import (
        SampleUnavailableError,
        sample_conversations,
        sample_path,
        write_sample_jsonl,
    )
    from wfsql.conversations.types import ConversationFormatError, IngestResult, IngestStats

_EXPORTS: dict[str, str] = {
    "load_into_duckdb": "duck",
    "conversation_chars_sql": "filters",
    "has_min_user_turns": "filters",
    "max_chars_sql": "filters",
    "min_user_turns_sql": "filters",
    "roles_alternate": "filters",
    "roles_alternate_sql": "filters",
    "within_max_chars": "filters",
    "FORMAT_NAMES": "formats",
    "ingest": "ingest",
    "english_score": "language",
    "english_score_sql": "language",
    "is_english": "language",
    "is_english_sql": "language",
    "scrub_pii": "pii",
    "scrub_pii_sql": "pii",
    "SampleUnavailableError": "sample",
    "sample_conversations": "sample",
    "sample_path": "sample",
    "write_sample_jsonl": "sample",
    "ConversationFormatError": "types",
    "IngestResult": "types",
    "IngestStats": "types",
}

__all__ = [
    "FORMAT_NAMES",
    "ConversationFormatError",
    "IngestResult",
    "IngestStats",
    "SampleUnavailableError",
    "conversation_chars_sql",
    "english_score",
    "english_score_sql",
    "has_min_user_turns",
    "ingest",
    "is_english",
    "is_english_sql",
    "load_into_duckdb",
    "max_chars_sql",
    "min_user_turns_sql",
    "roles_alternate",
    "roles_alternate_sql",
    "sample_conversations",
    "sample_path",
    "scrub_pii",
    "scrub_pii_sql",
    "within_max_chars",
    "write_sample_jsonl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
