"""Conversation ingestion: ShareGPT / OpenAI / WildChat files in, canonical Arrow tables out.

A pure-Python library with no dependency on the rest of wfsql; docs/sources.md describes formats,
quarantine policy, ids, filters and measured speed.
"""

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
