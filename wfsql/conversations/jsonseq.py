"""Split a JSON array, or a stream of concatenated JSON values, into its top-level elements.

Parsing the whole document at once would be fastest, but real exports are often cut off at the end or
carry one broken element, and a single parse then yields nothing at all. Quarantine rows also need each
element's byte offset. So elements are located one by one:

* **Fast path** (pretty-printed documents): a raw newline can never occur inside a JSON string, so in a
  consistently indented document each top-level element starts on a line with the first element's
  indentation. Those lines are *candidate* boundaries; every slice between two candidates is parsed
  with orjson. If all slices parse and are separated by commas, the slicing is the document's own
  element structure (JSON's grammar is unambiguous), so no exact scan is needed.
* **Exact path**: from the first slice that does not parse (or for compact documents without line
  structure), the standard library's ``raw_decode`` walks element by element and reports exact ends.
  After a malformed element it resynchronises at the next candidate boundary (best effort); a final
  element that runs into the end of the data is reported as truncated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

_WS = frozenset(b" \t\r\n")
_COMMA = ord(",")
_CLOSE = ord("]")
_DECODER = json.JSONDecoder()
_STR_WS = re.compile(r"[ \t\r\n]*")
_SCALAR_END = re.compile(r"[,\]}]")
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


@dataclass(slots=True)
class Element:
    """One top-level element: its byte span, and either its value or why it has none."""

    start: int
    end: int
    value: Any = None
    reason: str | None = None
    detail: str | None = None


def skip_ws(data: bytes, pos: int) -> int:
    """Index of the first non-whitespace byte at or after ``pos`` (``len(data)`` if none)."""
    n = len(data)
    while pos < n and data[pos] in _WS:
        pos += 1
    return pos


def _rstrip(data: bytes, start: int, end: int) -> int:
    while end > start and data[end - 1] in _WS:
        end -= 1
    return end


def _candidate_pattern(data: bytes, first: int) -> re.Pattern[bytes] | None:
    """Pattern whose match ends where a sibling of the element at ``first`` would start.

    Returns None when the first element does not begin its own line (compact documents).
    """
    line_start = data.rfind(b"\n", 0, first) + 1
    indent = data[line_start:first]
    if indent.strip(b" \t"):
        return None
    return re.compile(rb"\n" + re.escape(indent) + rb"(?=[^\s\]}])")


def is_eof_error(exc: json.JSONDecodeError, text: str) -> bool:
    """True when a parse failure means "the data stopped early" rather than "the data is wrong"."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip())


def split_elements(data: bytes, start: int, *, array: bool) -> Iterator[Element]:
    """Yield the top-level elements found from ``start``.

    ``array=True``: ``start`` is just after the opening ``[``; elements are comma separated and a ``]``
    ends the array (anything but whitespace after it is reported as ``trailing_data``).
    ``array=False``: a stream of whitespace-separated values starting at ``start``.
    """
    first = skip_ws(data, start)
    if first >= len(data):
        return
    if array and data[first] == _CLOSE:
        yield from _exact(data, first, array=array, pattern=None)
        return
    pattern = _candidate_pattern(data, first)
    if pattern is None:
        yield from _exact(data, first, array=array, pattern=None)
        return
    view = memoryview(data)
    cur = first
    for match in pattern.finditer(data, first + 1):
        nxt = match.end()
        end = _rstrip(data, cur, match.start())
        if array:
            if end <= cur or data[end - 1] != _COMMA:
                break
            end = _rstrip(data, cur, end - 1)
        try:
            value = orjson.loads(view[cur:end])
        except orjson.JSONDecodeError:
            break
        yield Element(cur, end, value)
        cur = nxt
    yield from _exact(data, cur, array=array, pattern=pattern)


def _exact(data: bytes, pos: int, *, array: bool, pattern: re.Pattern[bytes] | None) -> Iterator[Element]:
    """Element-by-element walk from ``pos`` with exact boundaries (slower; used from the first doubt on)."""
    text = data[pos:].decode("utf-8", "surrogateescape")
    same_width = len(text) == len(data) - pos
    mark_char = 0
    mark_byte = 0

    def to_byte(ci: int) -> int:
        # Character index in ``text`` -> byte offset in ``data``; calls come in increasing order.
        nonlocal mark_char, mark_byte
        if same_width:
            return pos + ci
        mark_byte += len(text[mark_char:ci].encode("utf-8", "surrogateescape"))
        mark_char = ci
        return pos + mark_byte

    resync = re.compile(pattern.pattern.decode("ascii")) if pattern is not None else None
    n = len(text)
    i = _STR_WS.match(text, 0).end()
    while i < n:
        if array and text[i] == "]":
            rest = _STR_WS.match(text, i + 1).end()
            if rest < n:
                b = to_byte(rest)
                yield Element(b, len(data), None, "trailing_data", "non-whitespace data after the closing ']'")
            return
        try:
            j = _decode_end(text, i)
        except json.JSONDecodeError as exc:
            skip = _skip_bad_element(text, i, exc.pos, resync)
            b = to_byte(i)
            if skip is None:
                if is_eof_error(exc, text):
                    yield Element(b, len(data), None, "truncated_record", _truncated_detail(len(data) - b))
                else:
                    yield Element(b, len(data), None, "malformed_json", _describe(exc, i))
                return
            stop, nxt = skip
            yield Element(b, to_byte(stop), None, "malformed_json", _describe(exc, i))
            i = nxt
            continue
        b_start = to_byte(i)
        b_end = to_byte(j)
        try:
            value = orjson.loads(memoryview(data)[b_start:b_end])
        except orjson.JSONDecodeError as exc:
            yield Element(b_start, b_end, None, "malformed_json", f"{exc.msg} (byte {exc.pos} of the record)")
        else:
            yield Element(b_start, b_end, value)
        i = _STR_WS.match(text, j).end()
        if array and i < n and text[i] == ",":
            i = _STR_WS.match(text, i + 1).end()


def _decode_end(text: str, start: int) -> int:
    """End of the JSON value starting at ``start``; deep nesting is reported as a parse error."""
    try:
        return _DECODER.raw_decode(text, start)[1]
    except RecursionError:
        raise json.JSONDecodeError("nesting too deep", text, start) from None


def _skip_bad_element(text: str, start: int, error_at: int, resync: re.Pattern[str] | None) -> tuple[int, int] | None:
    """``(end of the bad element, start of the next one)`` after a parse error, or None if unknown.

    Pretty-printed data: the next line with the elements' indentation. Otherwise (compact data, or no
    such line left): the bracket that closes the bad element, found by counting brackets outside
    strings (most malformed elements, e.g. a missing comma or a bad literal, keep balanced brackets).
    """
    if resync is not None:
        found = resync.search(text, max(error_at, start + 1))
        if found is not None:
            stop = start + len(text[start : found.start()].rstrip().rstrip(",").rstrip())
            return stop, found.end()
    if text[start] not in "[{":
        # A bad scalar: it ends at the next separator.
        found = _SCALAR_END.search(text, start + 1)
        if found is None:
            return None
        stop = start + len(text[start : found.start()].rstrip())
        nxt = found.end() if text[found.start()] == "," else found.start()
        return stop, _STR_WS.match(text, nxt).end()
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text, start):
        char = text[match.start()]
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                stop = match.end()
                nxt = _STR_WS.match(text, stop).end()
                if nxt < len(text) and text[nxt] == ",":
                    nxt = _STR_WS.match(text, nxt + 1).end()
                return stop, nxt
    return None


def _truncated_detail(size: int) -> str:
    return f"the data ends before this record is complete ({size} bytes of it present)"


def _describe(exc: json.JSONDecodeError, start: int) -> str:
    return f"{exc.msg} at character {exc.pos - start} of the record"
