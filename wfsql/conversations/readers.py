"""Turn paths into files and files into :class:`RawRecord` objects.

This module knows about containers (JSON array, JSON Lines, concatenated JSON, Parquet) and
compression (gzip, zstd, bz2, xz), and nothing about conversation formats. Containers and compression
are recognised from the bytes, not the file name, because exported files are often misnamed.
"""

from __future__ import annotations

import bz2
import glob
import json
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from wfsql.conversations.jsonseq import is_eof_error, skip_ws, split_elements
from wfsql.conversations.types import RawRecord

PathLike = str | os.PathLike[str]

#: File name endings picked up when a directory is given instead of files or a glob.
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet")
COMPRESSION_SUFFIXES = ("", ".gz", ".zst", ".zstd", ".bz2", ".xz")

_GLOB_CHARS = re.compile(r"[*?\[]")
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"
_PARQUET_BATCH = 2048


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


_MAGIC: tuple[tuple[bytes, str, Callable[[], _Decompressor]], ...] = (
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(wbits=31)),
    (b"\x28\xb5\x2f\xfd", "zstd", lambda: zstandard.ZstdDecompressor().decompressobj()),
    (b"BZh", "bz2", bz2.BZ2Decompressor),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),
)


def expand_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Resolve files, directories and glob patterns into a de-duplicated file list.

    Items keep their order; the matches of one glob or directory are sorted.

    Raises FileNotFoundError naming the first pattern or path that matches nothing, because a load that
    silently reads zero files looks exactly like a load of an empty source.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise FileNotFoundError("no input paths given")
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        text = os.fspath(item)
        if os.path.isfile(text):  # checked first: a real file name may contain "[" or "*"
            found = [Path(text)]
        elif os.path.isdir(text):
            found = sorted(p for p in Path(text).rglob("*") if p.is_file() and _is_data_name(p.name))
            if not found:
                raise FileNotFoundError(f"no conversation files (*.json, *.jsonl, *.parquet, ...) in {text!r}")
        elif _GLOB_CHARS.search(text):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if os.path.isfile(p)]
            if not found:
                raise FileNotFoundError(f"no files match the pattern {text!r}")
        else:
            raise FileNotFoundError(f"no such file: {text!r}")
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                out.append(path)
    return out


def _is_data_name(name: str) -> bool:
    lower = name.lower()
    return any(lower.endswith(d + c) for d in DATA_SUFFIXES for c in COMPRESSION_SUFFIXES)


def decompress(raw: bytes) -> tuple[bytes, str | None]:
    """Undo any compression recognised by magic bytes.

    Returns the data and, when the compressed stream was cut short or damaged, a note saying so; what
    could be decompressed is kept so the complete records in it can still be loaded.
    """
    for magic, name, factory in _MAGIC:
        if raw.startswith(magic):
            return _decompress_all(raw, name, factory)
    return raw, None


def _decompress_all(raw: bytes, name: str, factory: Callable[[], _Decompressor]) -> tuple[bytes, str | None]:
    parts: list[bytes] = []
    rest = raw
    while rest:
        dec = factory()
        try:
            parts.append(dec.decompress(rest))
        except (zlib.error, zstandard.ZstdError, OSError, EOFError, lzma.LZMAError) as exc:
            return b"".join(parts), f"{name} stream is damaged: {exc}"
        if not dec.eof:
            return b"".join(parts), f"{name} stream ends before its end marker"
        # Concatenated members/frames are legal; padding zeros after the last one are tolerated.
        rest = dec.unused_data.lstrip(b"\x00")
    return b"".join(parts), None


def iter_records(path: Path) -> Iterator[RawRecord]:
    """Yield every record of one file, parsed or with the reason it could not be parsed."""
    name = str(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == _PARQUET_MAGIC:
        yield from _iter_parquet(name, path)
        return
    data, note = decompress(path.read_bytes())
    last: RawRecord | None = None
    if data.startswith(_PARQUET_MAGIC):
        records: Iterator[RawRecord] = _iter_parquet(name, pa.BufferReader(data))
    else:
        records = _iter_json(name, data)
    for last in records:
        yield last
    if note is not None and (last is None or last.reason != "truncated_record"):
        index = 0 if last is None else last.record_index + 1
        yield RawRecord(name, index, None, len(data), None, reason="truncated_file", detail=note)


def _iter_parquet(name: str, source: Path | pa.BufferReader) -> Iterator[RawRecord]:
    try:
        parquet = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        yield RawRecord(name, 0, None, None, None, reason="unreadable_file", detail=str(exc))
        return
    index = 0
    batches = parquet.iter_batches(batch_size=_PARQUET_BATCH)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            # A damaged row group: report it; the rows before it are already loaded.
            yield RawRecord(name, index, None, None, None, reason="unreadable_file", detail=str(exc))
            return
        if batch is None:
            return
        for row in batch.to_pylist():
            yield RawRecord(name, index, None, None, None, value=row)
            index += 1


def _iter_json(name: str, data: bytes) -> Iterator[RawRecord]:
    start = 3 if data.startswith(_BOM) else 0
    first = skip_ws(data, start)
    if first >= len(data):
        return
    opener = data[first : first + 1]
    if opener == b"[":
        yield from _iter_elements(name, data, first + 1, array=True)
    elif opener == b"{" and _rest_of_line_blank(data, first + 1):
        # A lone "{" on the first line: pretty-printed object(s), not JSON Lines.
        yield from _iter_elements(name, data, first, array=False)
    else:
        yield from _iter_lines(name, data)


def _rest_of_line_blank(data: bytes, pos: int) -> bool:
    newline = data.find(b"\n", pos)
    return not data[pos : newline if newline >= 0 else len(data)].strip()


class _LineCounter:
    """Line number of a byte offset, counting newlines incrementally (queries mostly move forward)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._line = 1

    def __call__(self, offset: int) -> int:
        if offset < self._pos:
            self._pos, self._line = 0, 1
        self._line += self._data.count(b"\n", self._pos, offset)
        self._pos = offset
        return self._line


def _iter_elements(name: str, data: bytes, start: int, *, array: bool) -> Iterator[RawRecord]:
    view = memoryview(data)
    line_of = _LineCounter(data)
    for index, element in enumerate(split_elements(data, start, array=array)):
        yield RawRecord(
            name,
            index,
            None,
            element.start,
            view[element.start : element.end],
            element.value,
            element.reason,
            element.detail,
            line_of,
        )


def _iter_lines(name: str, data: bytes) -> Iterator[RawRecord]:
    lines = data.split(b"\n")
    last_lineno = len(lines)
    ends_with_newline = data.endswith(b"\n")
    offset = 0
    index = 0
    for lineno, text in enumerate(lines, 1):
        start = offset
        offset += len(text) + 1
        if not text.strip():
            continue
        try:
            value: Any = orjson.loads(text)
        except orjson.JSONDecodeError:
            at_eof = lineno == last_lineno and not ends_with_newline
            reason, detail = _line_problem(text, at_eof=at_eof)
            yield RawRecord(name, index, lineno, start, text, reason=reason, detail=detail)
        else:
            yield RawRecord(name, index, lineno, start, text, value)
        index += 1


def _line_problem(raw: bytes, *, at_eof: bool) -> tuple[str, str]:
    """Classify a JSON Lines record that orjson rejected, with the standard library's wording."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "malformed_json", f"invalid UTF-8 at byte {exc.start} of the line"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        if at_eof and is_eof_error(exc, text):
            return "truncated_record", f"the file ends before this record is complete ({len(raw)} bytes of it present)"
        return "malformed_json", f"{exc.msg} at column {exc.colno}"
    except RecursionError:
        return "malformed_json", "nesting too deep"
    return "malformed_json", "value rejected by the JSON parser (e.g. NaN, huge integer)"
