"""Arrow schemas of the canonical tables.

One place fixes the column names and types so the tables always look the same, including when a load
produced no rows (DuckDB then still creates correctly typed, empty tables).
"""

from __future__ import annotations

import pyarrow as pa

CONVERSATIONS_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_format", pa.string(), nullable=False),
        pa.field("record_index", pa.int64(), nullable=False),
        pa.field("n_turns", pa.int32(), nullable=False),
        pa.field("n_user_turns", pa.int32(), nullable=False),
        pa.field("language", pa.string()),
        pa.field("toxic", pa.bool_()),
        pa.field("redacted", pa.bool_()),
        pa.field("model", pa.string()),
        pa.field("metadata", pa.string()),
    ]
)

TURNS_SCHEMA = pa.schema(
    [
        pa.field("conversation_id", pa.string(), nullable=False),
        pa.field("turn_index", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("content", pa.string(), nullable=False),
        pa.field("char_length", pa.int32(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line", pa.int64()),
        pa.field("byte_offset", pa.int64()),
        pa.field("record_index", pa.int64()),
        pa.field("conversation_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
    ]
)

#: Longest ``raw`` text kept per quarantined record.
RAW_LIMIT = 2000
