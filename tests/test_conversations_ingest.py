"""Ingestion engine: formats, containers, quarantine, ids, strict mode and the DuckDB load."""

from __future__ import annotations

import bz2
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from wfsql.conversations import ConversationFormatError, IngestResult, ingest, load_into_duckdb
from wfsql.conversations.schema import CONVERSATIONS_SCHEMA, QUARANTINE_SCHEMA, TURNS_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures" / "conversations"
SHAREGPT = FIXTURES / "sharegpt_small.json"
OPENAI = FIXTURES / "openai_small.jsonl"
WILDCHAT = FIXTURES / "wildchat_small.jsonl"
BAD = FIXTURES / "bad_records.jsonl"
TRUNCATED = FIXTURES / "truncated_array.json"


def records_of(path: Path) -> list[dict[str, Any]]:
    """The fixture's records, read independently of the code under test."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def turns_by_id(result: IngestResult) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for row in result.turns.to_pylist():
        out.setdefault(row["conversation_id"], []).append((row["role"], row["content"]))
    return out


def _ingest_records(records: list[Any], **kwargs: Any) -> IngestResult:
    """Ingest records written to a temporary JSON Lines file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        return ingest(str(path), **kwargs)


def assert_invariant(result: IngestResult) -> None:
    s = result.stats
    assert s.read == s.loaded + s.quarantined
    assert result.conversations.num_rows == s.loaded
    assert result.quarantine.num_rows == s.quarantined
    assert sum(s.by_reason.values()) == s.quarantined
    assert result.turns.num_rows == s.turns == sum(result.conversations.column("n_turns").to_pylist())


# --------------------------------------------------------------------------- formats


def test_sharegpt_array_roles_metadata_and_turn_columns() -> None:
    result = ingest(str(SHAREGPT))
    assert_invariant(result)
    assert result.stats.loaded == 3 and result.stats.quarantined == 0
    assert result.conversations.schema == CONVERSATIONS_SCHEMA
    assert result.turns.schema == TURNS_SCHEMA
    assert result.quarantine.schema == QUARANTINE_SCHEMA
    convs = {row["conversation_id"]: row for row in result.conversations.to_pylist()}
    assert list(convs) == ["sg-001", "sg-002", "sg-003"]
    assert {row["source_format"] for row in convs.values()} == {"sharegpt"}
    assert [row["record_index"] for row in convs.values()] == [0, 1, 2]
    assert convs["sg-003"]["metadata"] == '{"source":"forum"}'
    assert convs["sg-001"]["metadata"] == "{}"
    assert convs["sg-002"]["n_turns"] == 3 and convs["sg-002"]["n_user_turns"] == 1
    assert convs["sg-001"]["language"] is None and convs["sg-001"]["toxic"] is None

    turns = turns_by_id(result)
    # "Human" (any case) -> user; chatgpt/bard/bing -> assistant; system stays system.
    assert [r for r, _ in turns["sg-002"]] == ["system", "user", "assistant"]
    assert [r for r, _ in turns["sg-003"]] == ["user", "assistant", "user", "assistant"]
    expected = records_of(SHAREGPT)[2]["conversations"][1]["value"]
    assert turns["sg-003"][1][1] == expected  # content kept verbatim, newlines included
    rows = [r for r in result.turns.to_pylist() if r["conversation_id"] == "sg-001"]
    assert [r["turn_index"] for r in rows] == [0, 1, 2, 3]
    assert all(r["char_length"] == len(r["content"]) for r in rows)


def test_openai_messages_parts_are_joined_and_blank_lines_skipped() -> None:
    result = ingest(str(OPENAI))
    assert_invariant(result)
    assert result.stats.read == 3  # the blank line is not a record
    turns = turns_by_id(result)
    assert turns["oa-2"] == [("user", "Translate to French:\ngood morning"), ("assistant", "Bonjour.")]
    convs = result.conversations.to_pylist()
    assert convs[0]["model"] == "gpt-4o-mini"
    third = convs[2]
    assert third["conversation_id"].startswith("h_") and len(third["conversation_id"]) == 42
    assert third["record_index"] == 2
    assert json.loads(third["metadata"]) == {"tags": ["demo", "short"], "rating": 4}


def test_wildchat_record_level_fields() -> None:
    result = ingest(str(WILDCHAT))
    assert_invariant(result)
    first, second = result.conversations.to_pylist()
    assert first["conversation_id"] == "wc-aaa111"
    assert (first["language"], first["toxic"], first["redacted"]) == ("English", False, False)
    assert first["model"] == "gpt-3.5-turbo-0613"
    assert json.loads(first["metadata"]) == {"timestamp": "2023-09-14T10:11:12Z", "turn": 2, "country": "Canada"}
    assert (second["language"], second["redacted"]) == ("Spanish", True)
    assert turns_by_id(result)["wc-bbb222"][0] == ("user", "¿Cuál es la capital de Australia?")


def test_mistyped_record_fields_stay_in_metadata() -> None:
    record = {"id": "x", "toxic": "no", "language": 7, "conversation": [{"role": "user", "content": "hi"}]}
    result = _ingest_records([record])
    row = result.conversations.to_pylist()[0]
    assert row["toxic"] is None and row["language"] is None
    assert json.loads(row["metadata"]) == {"toxic": "no", "language": 7}


# --------------------------------------------------------------------------- containers


def _write_container(records: list[dict[str, Any]], tmp: Path, container: str) -> Path:
    if container == "array_pretty":
        path = tmp / "data.json"
        path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")
    elif container == "array_compact":
        path = tmp / "data.json"
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    elif container == "array_tabs_crlf":
        path = tmp / "data.json"
        text = json.dumps(records, indent="\t", ensure_ascii=False).replace("\n", "\r\n")
        path.write_bytes(text.encode("utf-8"))
    elif container == "jsonl":
        path = tmp / "data.jsonl"
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    elif container == "pretty_stream":
        path = tmp / "data.json"
        path.write_text("\n".join(json.dumps(r, indent=2) for r in records) + "\n", encoding="utf-8")
    elif container == "jsonl_gz":
        path = tmp / "data.jsonl.gz"
        path.write_bytes(gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records)))
    elif container == "json_gz":
        path = tmp / "data.json.gz"
        path.write_bytes(gzip.compress(json.dumps(records, indent=2).encode()))
    elif container == "jsonl_zst":
        path = tmp / "data.jsonl.zst"
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    elif container == "json_zst_streamed":
        # Written through a stream writer: the frame carries no content size.
        path = tmp / "data.json.zst"
        with open(path, "wb") as fh, zstandard.ZstdCompressor().stream_writer(fh) as writer:
            writer.write(json.dumps(records, indent=2).encode())
    elif container == "jsonl_bz2":
        path = tmp / "data.jsonl.bz2"
        path.write_bytes(bz2.compress(b"".join(orjson.dumps(r) + b"\n" for r in records)))
    elif container == "parquet":
        path = tmp / "data.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    else:  # pragma: no cover - test bug
        raise AssertionError(container)
    return path


CONTAINERS = [
    "array_pretty",
    "array_compact",
    "array_tabs_crlf",
    "jsonl",
    "pretty_stream",
    "jsonl_gz",
    "json_gz",
    "jsonl_zst",
    "json_zst_streamed",
    "jsonl_bz2",
    "parquet",
]


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("fixture", [SHAREGPT, OPENAI, WILDCHAT], ids=["sharegpt", "openai", "wildchat"])
def test_every_format_in_every_container(fixture: Path, container: str, tmp_path: Path) -> None:
    records = records_of(fixture)
    if container == "parquet" and fixture == OPENAI:
        # Parquet needs one type per column: keep the records whose contents are plain strings.
        records = [r for r in records if all(isinstance(m["content"], str) for m in r["messages"])]
    reference = _ingest_records(records)
    path = _write_container(records, tmp_path, container)
    result = ingest(str(path))
    assert_invariant(result)
    assert result.stats.quarantined == 0
    assert turns_by_id(result) == turns_by_id(reference)
    assert result.conversations.column("source_format").to_pylist() == (
        reference.conversations.column("source_format").to_pylist()
    )
    assert result.conversations.column("record_index").to_pylist() == list(range(len(records)))


def test_parquet_rows_have_no_line_but_keep_record_index(tmp_path: Path) -> None:
    records = records_of(SHAREGPT)
    records[1]["conversations"][2]["value"] = ""
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    result = ingest(str(path))
    (row,) = result.quarantine.to_pylist()
    assert (row["line"], row["byte_offset"], row["record_index"]) == (None, None, 1)
    assert row["reason"] == "empty_content" and row["conversation_id"] == "sg-002"
    assert json.loads(row["raw"])["id"] == "sg-002"


def test_glob_list_and_directory_inputs(tmp_path: Path) -> None:
    records = records_of(SHAREGPT)
    for i, record in enumerate(records):
        (tmp_path / f"part-{i}.jsonl.gz").write_bytes(gzip.compress(orjson.dumps(record) + b"\n"))
    (tmp_path / "notes.txt").write_text("not data")
    by_glob = ingest(str(tmp_path / "part-*.jsonl.gz"))
    assert by_glob.stats.files == 3 and by_glob.stats.loaded == 3
    assert by_glob.conversations.column("source_file").to_pylist() == [
        str(tmp_path / f"part-{i}.jsonl.gz") for i in range(3)
    ]
    by_dir = ingest(tmp_path)
    assert by_dir.stats.files == 3
    # The same file named twice (directly and through a glob) is read once.
    by_list = ingest([str(tmp_path / "part-0.jsonl.gz"), str(tmp_path / "part-*.jsonl.gz")])
    assert by_list.stats.files == 3 and by_list.stats.quarantined == 0


def test_missing_inputs_raise_file_not_found(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing-*.jsonl")
    with pytest.raises(FileNotFoundError, match="nothing-"):
        ingest(pattern)
    with pytest.raises(FileNotFoundError, match=r"absent\.json"):
        ingest([str(SHAREGPT), str(tmp_path / "absent.json")])
    with pytest.raises(FileNotFoundError):
        ingest([])


def test_empty_inputs_give_typed_empty_tables(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("[]\n")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    result = ingest(str(tmp_path / "*"))
    assert result.stats.read == 0 and result.stats.files == 2
    assert result.turns.num_rows == 0 and result.turns.schema == TURNS_SCHEMA
    assert result.quarantine.schema == QUARANTINE_SCHEMA


# --------------------------------------------------------------------------- detection


def test_auto_detection_per_record_and_explicit_override(tmp_path: Path) -> None:
    mixed = [records_of(SHAREGPT)[0], records_of(OPENAI)[0], records_of(WILDCHAT)[0]]
    path = _write_container(mixed, tmp_path, "jsonl")
    auto = ingest(str(path))
    assert auto.conversations.column("source_format").to_pylist() == ["sharegpt", "openai", "wildchat"]

    forced = ingest(str(path), format="openai")
    assert_invariant(forced)
    assert forced.conversations.column("conversation_id").to_pylist() == ["oa-1"]
    assert forced.quarantine.column("reason").to_pylist() == ["missing_field:messages"] * 2
    assert forced.quarantine.column("line").to_pylist() == [1, 3]

    same = ingest(str(SHAREGPT), format="sharegpt")
    assert turns_by_id(same) == turns_by_id(ingest(str(SHAREGPT)))
    with pytest.raises(ValueError, match="unknown conversation format"):
        ingest(str(SHAREGPT), format="alpaca")


def test_sharegpt_list_with_role_content_keys_is_accepted() -> None:
    record = {"id": "rc", "conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    result = _ingest_records([record])
    assert turns_by_id(result) == {"rc": [("user", "hi"), ("assistant", "yo")]}


# --------------------------------------------------------------------------- quarantine


def test_every_bad_input_class_is_quarantined_with_location() -> None:
    result = ingest(str(BAD))
    assert_invariant(result)
    assert result.conversations.column("conversation_id").to_pylist() == ["ok-1", "ok-2"]
    rows = result.quarantine.to_pylist()
    got = [(r["line"], r["record_index"], r["reason"], r["conversation_id"]) for r in rows]
    assert got == [
        (2, 1, "malformed_json", "bad-json"),
        (3, 2, "no_turns", "no-turns"),
        (4, 3, "empty_content", "empty-turn"),
        (5, 4, "unknown_role:narrator", "weird-role"),
        (6, 5, "duplicate_id", "ok-1"),
        (7, 6, "unknown_format", None),
        (8, 7, "not_an_object", None),
        (9, 8, "unsupported_content:image_url", "image"),
        (11, 10, "truncated_record", "tail-1"),
    ]
    data = BAD.read_bytes()
    lines = data.split(b"\n")
    for row in rows:
        assert data[row["byte_offset"] :].startswith(lines[row["line"] - 1])
        assert row["raw"] == lines[row["line"] - 1].decode()
        assert row["source_file"] == str(BAD)
        assert row["detail"]
    assert result.stats.by_reason["duplicate_id"] == 1


def test_a_bad_turn_quarantines_the_whole_conversation() -> None:
    result = ingest(str(BAD))
    assert "empty-turn" not in set(result.turns.column("conversation_id").to_pylist())
    assert "weird-role" not in set(result.turns.column("conversation_id").to_pylist())


def test_truncated_array_keeps_complete_records(tmp_path: Path) -> None:
    result = ingest(str(TRUNCATED))
    assert_invariant(result)
    assert result.conversations.column("conversation_id").to_pylist() == ["sg-001", "sg-002"]
    (row,) = result.quarantine.to_pylist()
    data = TRUNCATED.read_bytes()
    assert row["reason"] == "truncated_record"
    assert row["byte_offset"] == data.index(b'{\n    "id": "sg-003"')
    assert row["line"] == data[: row["byte_offset"]].count(b"\n") + 1
    assert row["conversation_id"] == "sg-003"
    assert row["raw"] == data[row["byte_offset"] :].decode()


def test_truncated_compressed_streams(tmp_path: Path) -> None:
    payload = SHAREGPT.read_bytes()
    cut_gz = tmp_path / "cut.json.gz"
    cut_gz.write_bytes(gzip.compress(payload)[:-30])
    result = ingest(str(cut_gz))
    assert_invariant(result)
    assert result.stats.loaded >= 2
    assert set(result.stats.by_reason) <= {"truncated_record", "truncated_file"}
    assert result.stats.quarantined == 1

    # Cut exactly at a record boundary: nothing partial, but the damage is still reported.
    clean_cut = tmp_path / "boundary.jsonl.gz"
    full = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records_of(SHAREGPT)))
    clean_cut.write_bytes(full[:-8])  # drop the gzip trailer only
    result = ingest(str(clean_cut))
    assert_invariant(result)
    assert result.stats.by_reason == {"truncated_file": 1} and result.stats.loaded == 3


def test_malformed_element_inside_pretty_and_compact_arrays(tmp_path: Path) -> None:
    records = records_of(SHAREGPT)
    pretty = json.dumps(records, indent=2)
    broken = pretty.replace('"id": "sg-002",', '"id": "sg-002" "oops",', 1)
    path = tmp_path / "pretty.json"
    path.write_text(broken)
    result = ingest(str(path))
    assert_invariant(result)
    assert result.conversations.column("conversation_id").to_pylist() == ["sg-001", "sg-003"]
    (row,) = result.quarantine.to_pylist()
    assert row["reason"] == "malformed_json" and row["record_index"] == 1
    assert row["line"] == broken[: broken.index('"id": "sg-002"')].count("\n")  # the line with "{"
    assert row["raw"].startswith("{") and "sg-002" in row["raw"] and "sg-003" not in row["raw"]

    compact = json.dumps(records).replace('"id": "sg-002",', '"id": "sg-002" "oops",', 1)
    path = tmp_path / "compact.json"
    path.write_text(compact)
    result = ingest(str(path))
    assert_invariant(result)
    assert result.conversations.column("conversation_id").to_pylist() == ["sg-001", "sg-003"]
    assert result.quarantine.column("reason").to_pylist() == ["malformed_json"]


def test_byte_offsets_count_utf8_bytes_not_characters(tmp_path: Path) -> None:
    records = [*records_of(WILDCHAT), {"id": "late", "conversations": [{"from": "human", "value": "é"}]}]
    text = json.dumps(records, indent=1, ensure_ascii=False)
    text = text.replace('"value": "é"', '"value": "é" !')
    path = tmp_path / "utf8.json"
    path.write_bytes(text.encode("utf-8"))
    result = ingest(str(path))
    (row,) = result.quarantine.to_pylist()
    data = path.read_bytes()
    assert row["reason"] == "malformed_json"
    assert row["byte_offset"] == data.index(b'{\n  "id": "late"')


def test_invalid_utf8_and_trailing_data(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = orjson.dumps(records_of(SHAREGPT)[0])
    path.write_bytes(good + b"\n" + b'{"id": "x\xff", "conversations": []}\n')
    result = ingest(str(path))
    assert result.quarantine.column("reason").to_pylist() == ["malformed_json"]
    assert "UTF-8" in result.quarantine.column("detail")[0].as_py()

    path = tmp_path / "trailing.json"
    path.write_text(json.dumps(records_of(SHAREGPT), indent=2) + "\n garbage\n")
    result = ingest(str(path))
    assert_invariant(result)
    assert result.stats.loaded == 3 and result.stats.by_reason == {"trailing_data": 1}


def test_unreadable_parquet_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64)
    result = ingest([str(SHAREGPT), str(path)])
    assert_invariant(result)
    assert result.stats.loaded == 3 and result.stats.by_reason == {"unreadable_file": 1}
    assert result.quarantine.column("source_file").to_pylist() == [str(path)]


def test_tool_calls_and_null_content_are_reported() -> None:
    records = [
        {
            "id": "t",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
            ],
        },
        {"id": "n", "messages": [{"role": "user", "content": None}]},
        {"id": "r", "messages": [{"role": "tool", "content": "42"}]},
        {"id": "m", "messages": [{"role": "user"}]},
        {"id": "l", "messages": "hello"},
        {"id": "p", "messages": ["hello"]},
    ]
    result = _ingest_records(records)
    assert result.quarantine.column("reason").to_pylist() == [
        "unsupported_content:tool_calls",
        "empty_content",
        "unknown_role:tool",
        "missing_field:content",
        "invalid_field:messages",
        "invalid_field:turn",
    ]


# --------------------------------------------------------------------------- strict mode


def test_strict_mode_names_file_line_and_reason() -> None:
    with pytest.raises(ConversationFormatError) as info:
        ingest(str(BAD), strict=True)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.source_file, err.line, err.reason) == (str(BAD), 2, "malformed_json")
    assert str(BAD) in str(err) and "line 2" in str(err) and "malformed_json" in str(err)
    assert ingest(str(SHAREGPT), strict=True).stats.loaded == 3


def test_strict_mode_reports_duplicates_and_parquet_records(tmp_path: Path) -> None:
    records = [records_of(SHAREGPT)[0], records_of(SHAREGPT)[0]]
    path = tmp_path / "dup.parquet"
    pq.write_table(pa.Table.from_pylist(records), path)
    with pytest.raises(ConversationFormatError, match=r"record 1: duplicate_id"):
        ingest(str(path), strict=True)


# --------------------------------------------------------------------------- ids


def test_source_ids_kept_and_hash_ids_stable() -> None:
    conv = [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]
    first = _ingest_records([{"conversations": conv}]).conversations.column("conversation_id")[0].as_py()
    again = _ingest_records([{"conversations": conv}]).conversations.column("conversation_id")[0].as_py()
    assert first == again and first.startswith("h_")
    # Same dialogue in another format -> same canonical turns -> same id.
    as_openai = [{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]}]
    assert _ingest_records(as_openai).conversations.column("conversation_id")[0].as_py() == first
    changed = [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "5"}]
    other = _ingest_records([{"conversations": changed}]).conversations.column("conversation_id")[0].as_py()
    assert other != first
    # Numeric source ids are kept as text; id wins over conversation_hash.
    keyed = _ingest_records([{"id": 7, "conversation_hash": "zz", "conversations": conv}])
    assert keyed.conversations.column("conversation_id").to_pylist() == ["7"]
    assert json.loads(keyed.conversations.column("metadata")[0].as_py()) == {"conversation_hash": "zz"}


def test_identical_id_less_conversations_are_duplicates_across_files(tmp_path: Path) -> None:
    conv = {"conversations": [{"from": "human", "value": "ping"}, {"from": "gpt", "value": "pong"}]}
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_bytes(orjson.dumps(conv) + b"\n")
    result = ingest(str(tmp_path / "*.jsonl"))
    assert_invariant(result)
    assert result.stats.loaded == 1
    (row,) = result.quarantine.to_pylist()
    assert row["reason"] == "duplicate_id" and row["source_file"].endswith("b.jsonl")
    assert "a.jsonl" in row["detail"]


# --------------------------------------------------------------------------- DuckDB


def test_load_into_duckdb_creates_three_typed_tables() -> None:
    result = ingest([str(SHAREGPT), str(BAD)])
    con = duckdb.connect()
    load_into_duckdb(con, result, prefix="raw", schema="staging")
    counts = [
        con.execute(f"SELECT count(*) FROM staging.raw_{t}").fetchone()[0]
        for t in ("conversations", "turns", "quarantine")
    ]
    assert counts == [result.stats.loaded, result.stats.turns, result.stats.quarantined]
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'staging' AND table_name = 'raw_conversations'"
        ).fetchall()
    )
    assert types["record_index"] == "BIGINT" and types["n_turns"] == "INTEGER" and types["toxic"] == "BOOLEAN"
    assert types["conversation_id"] == "VARCHAR"
    turn_types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'raw_turns'"
        ).fetchall()
    )
    assert turn_types == {
        "conversation_id": "VARCHAR",
        "turn_index": "INTEGER",
        "role": "VARCHAR",
        "content": "VARCHAR",
        "char_length": "INTEGER",
    }
    # Replacing works, and DuckDB's length() agrees with char_length.
    load_into_duckdb(con, ingest(str(WILDCHAT)), prefix="raw", schema="staging")
    assert con.execute("SELECT count(*) FROM staging.raw_conversations").fetchone()[0] == 2
    assert con.execute("SELECT bool_and(length(content) = char_length) FROM staging.raw_turns").fetchone()[0]
    leftovers = con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '__wfsql_ingest_%'").fetchone()
    assert leftovers[0] == 0


def test_load_into_duckdb_is_atomic() -> None:
    con = duckdb.connect()
    load_into_duckdb(con, ingest(str(SHAREGPT)), prefix="src")
    con.execute("DROP TABLE src_quarantine")
    con.execute("CREATE VIEW src_quarantine AS SELECT 1 AS x")  # makes the third CREATE fail
    with pytest.raises(duckdb.Error):
        load_into_duckdb(con, ingest(str(WILDCHAT)), prefix="src")
    # The first two tables were not replaced: still the ShareGPT load.
    ids = [r[0] for r in con.execute("SELECT conversation_id FROM src_conversations ORDER BY 1").fetchall()]
    assert ids == ["sg-001", "sg-002", "sg-003"]
    assert con.execute("SELECT count(*) FROM src_turns").fetchone()[0] == 11
    with pytest.raises(ValueError):
        load_into_duckdb(con, ingest(str(SHAREGPT)), prefix="")
