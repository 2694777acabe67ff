"""Plain data carriers shared by the ingestion modules.

Kept apart from the logic so readers, normalisers and the orchestrator can exchange records without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa


class ConversationFormatError(ValueError):
    """A record could not be loaded and the caller asked for ``strict=True``.

    Carries the location so a user can open the file at the right line instead of guessing.
    """

    def __init__(
        self,
        source_file: str,
        line: int | None,
        record_index: int | None,
        reason: str,
        detail: str,
    ) -> None:
        self.source_file = source_file
        self.line = line
        self.record_index = record_index
        self.reason = reason
        self.detail = detail
        where = f"line {line}" if line is not None else f"record {record_index}"
        super().__init__(f"{source_file}: {where}: {reason}: {detail}")


@dataclass(slots=True)
class RawRecord:
    """One record as read from a container, before any format normalisation.

    ``value`` is the parsed JSON (or Parquet row) when parsing succeeded; otherwise ``reason`` and
    ``detail`` say why not. ``raw`` holds the record's source bytes so quarantine rows can show them.
    ``line`` may be left None with a ``line_of`` callback instead: counting newlines up to every
    record of a large JSON array costs more than doing it for the few records that get quarantined.
    """

    source_file: str
    record_index: int
    line: int | None
    byte_offset: int | None
    raw: bytes | memoryview | None
    value: Any = None
    reason: str | None = None
    detail: str | None = None
    line_of: Callable[[int], int] | None = None

    def resolved_line(self) -> int | None:
        """The 1-based line where the record starts (None for Parquet rows)."""
        if self.line is None and self.line_of is not None and self.byte_offset is not None:
            self.line = self.line_of(self.byte_offset)
        return self.line


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a record is quarantined: a short machine code and a sentence for humans."""

    reason: str
    detail: str


@dataclass(slots=True)
class IngestStats:
    """Counts for one :func:`ingest` call; ``read == loaded + quarantined`` always holds."""

    files: int = 0
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    turns: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The three canonical tables plus the counts that describe how they were produced."""

    conversations: pa.Table
    turns: pa.Table
    quarantine: pa.Table
    stats: IngestStats
