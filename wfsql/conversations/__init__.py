"""Conversation ingestion: ShareGPT / OpenAI / WildChat files in, canonical Arrow tables out.

A pure-Python library with no dependency on the rest of wfsql. See docs/sources.md.
"""

from wfsql.conversations.duck import load_into_duckdb
from wfsql.conversations.formats import FORMAT_NAMES
from wfsql.conversations.ingest import ingest
from wfsql.conversations.types import ConversationFormatError, IngestResult, IngestStats

__all__ = [
    "FORMAT_NAMES",
    "ConversationFormatError",
    "IngestResult",
    "IngestStats",
    "ingest",
    "load_into_duckdb",
]
