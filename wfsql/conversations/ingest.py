"""Orchestrate a load: files -> records -> canonical conversations, turns and quarantine tables.

Every record read ends up in exactly one place, the conversation tables or the quarantine table, so
``stats.read == stats.loaded + stats.quarantined`` holds for every load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from wfsql.conversations.formats import (
    FORMAT_NAMES,
    FORMATS,
    Normalized,
    content_hash_id,
    normalize,
    source_id_of,
)
from wfsql.conversations.readers import expand_paths, iter_records
from wfsql.conversations.schema import CONVERSATIONS_SCHEMA, QUARANTINE_SCHEMA, RAW_LIMIT, TURNS_SCHEMA
from wfsql.conversations.types import (
    ConversationFormatError,
    IngestResult,
    IngestStats,
    Problem,
    RawRecord,
)

_ID_IN_RAW = re.compile(rb'"(?:id|conversation_id|conversation_hash)"\s*:\s*"([^"\\]{1,256})"')
_ID_SEARCH_BYTES = 512
#: Characters of turn text buffered as Python strings before they are moved into an Arrow batch.
_FLUSH_CHARS = 32_000_000


class _Tables:
    """Column lists for the three output tables, filled record by record."""

    def __init__(self) -> None:
        self.conv: dict[str, list[Any]] = {name: [] for name in CONVERSATIONS_SCHEMA.names}
        self.turn_ids: list[str] = []
        self.turn_index: list[int] = []
        self.roles: list[str] = []
        self.contents: list[str] = []
        self.content_chars = 0
        self.turn_batches: list[pa.RecordBatch] = []
        self.quarantine: dict[str, list[Any]] = {name: [] for name in QUARANTINE_SCHEMA.names}

    def add_conversation(self, conversation_id: str, record: RawRecord, item: Normalized) -> None:
        conv = self.conv
        n_turns = len(item.roles)
        conv["conversation_id"].append(conversation_id)
        conv["source_file"].append(record.source_file)
        conv["source_format"].append(item.source_format)
        conv["record_index"].append(record.record_index)
        conv["n_turns"].append(n_turns)
        conv["n_user_turns"].append(item.n_user_turns)
        conv["language"].append(item.language)
        conv["toxic"].append(item.toxic)
        conv["redacted"].append(item.redacted)
        conv["model"].append(item.model)
        conv["metadata"].append(item.metadata)
        self.turn_ids.extend([conversation_id] * n_turns)
        self.turn_index.extend(range(n_turns))
        self.roles.extend(item.roles)
        self.contents.extend(item.contents)
        self.content_chars += item.n_chars
        if self.content_chars >= _FLUSH_CHARS:
            self.flush_turns()

    def flush_turns(self) -> None:
        """Move buffered turns into an Arrow batch, so the Python strings can be freed early.

        Bounds peak memory (Python holds non-ASCII text at up to 4 bytes per character) and keeps each
        batch far below Arrow's 2 GiB limit for one string array.
        """
        if not self.contents:
            return
        content = pa.array(self.contents, type=pa.string())
        self.turn_batches.append(
            pa.RecordBatch.from_arrays(
                [
                    pa.array(self.turn_ids, type=pa.string()),
                    pa.array(self.turn_index, type=pa.int32()),
                    pa.array(self.roles, type=pa.string()),
                    content,
                    pc.utf8_length(content).cast(pa.int32()),
                ],
                schema=TURNS_SCHEMA,
            )
        )
        self.turn_ids, self.turn_index, self.roles, self.contents = [], [], [], []
        self.content_chars = 0

    def add_quarantine(self, record: RawRecord, conversation_id: str | None, problem: Problem) -> None:
        q = self.quarantine
        q["source_file"].append(record.source_file)
        q["line"].append(record.resolved_line())
        q["byte_offset"].append(record.byte_offset)
        q["record_index"].append(record.record_index)
        q["conversation_id"].append(conversation_id)
        q["reason"].append(problem.reason)
        q["detail"].append(problem.detail)
        q["raw"].append(_raw_text(record))

    def build(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        conversations = pa.Table.from_pydict(self.conv, schema=CONVERSATIONS_SCHEMA)
        self.flush_turns()
        turns = pa.Table.from_batches(self.turn_batches, schema=TURNS_SCHEMA)
        quarantine = pa.Table.from_pydict(self.quarantine, schema=QUARANTINE_SCHEMA)
        return conversations, turns, quarantine


def ingest(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    format: str = "auto",
    *,
    strict: bool = False,
) -> IngestResult:
    """Load conversation files into canonical Arrow tables.

    ``paths``: a file, a directory, a glob pattern, or a list of those. ``format``: ``"auto"`` detects
    the format per record; ``"sharegpt"``, ``"openai"`` or ``"wildchat"`` forces one, and records that
    do not fit it are quarantined (``missing_field:...``). With ``strict=True`` the first record that
    would be quarantined raises :class:`ConversationFormatError` instead.
    """
    if format not in FORMAT_NAMES:
        raise ValueError(f"unknown conversation format {format!r}; expected one of {', '.join(FORMAT_NAMES)}")
    spec = None if format == "auto" else FORMATS[format]
    files = expand_paths(paths)
    stats = IngestStats(files=len(files))
    tables = _Tables()
    seen: dict[str, tuple[str, int]] = {}
    for path in files:
        for record in iter_records(path):
            stats.read += 1
            if record.reason is not None:
                problem = Problem(record.reason, record.detail or "")
                conversation_id = _id_from_raw(record.raw)
            else:
                item = normalize(record.value, spec)
                if isinstance(item, Normalized):
                    conversation_id = item.source_id or content_hash_id(item.roles, item.contents)
                    first = seen.get(conversation_id)
                    if first is None:
                        seen[conversation_id] = (record.source_file, record.record_index)
                        tables.add_conversation(conversation_id, record, item)
                        stats.loaded += 1
                        stats.turns += len(item.roles)
                        continue
                    problem = Problem(
                        "duplicate_id",
                        f"id {conversation_id!r} was already loaded from {first[0]} record {first[1]}",
                    )
                else:
                    problem = item
                    conversation_id = source_id_of(record.value)[0]
            if strict:
                raise ConversationFormatError(
                    record.source_file, record.resolved_line(), record.record_index, problem.reason, problem.detail
                )
            tables.add_quarantine(record, conversation_id, problem)
            stats.quarantined += 1
            stats.by_reason[problem.reason] = stats.by_reason.get(problem.reason, 0) + 1
    conversations, turns, quarantine = tables.build()
    return IngestResult(conversations=conversations, turns=turns, quarantine=quarantine, stats=stats)


def _raw_text(record: RawRecord) -> str | None:
    """Up to RAW_LIMIT characters of the record as it appeared in the source (or re-serialised)."""
    if record.raw is not None:
        return bytes(record.raw[: RAW_LIMIT * 4]).decode("utf-8", "replace")[:RAW_LIMIT]
    if record.value is not None:
        return orjson.dumps(record.value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()[:RAW_LIMIT]
    return None


def _id_from_raw(raw: bytes | memoryview | None) -> str | None:
    """Best-effort id of a record that could not be parsed, so users can find it in the source."""
    if raw is None:
        return None
    found = _ID_IN_RAW.search(bytes(raw[:_ID_SEARCH_BYTES]))
    return found.group(1).decode("utf-8", "replace") if found else None
