"""`wfsql build` gates downstream models on tests; `wfsql test --select`; run_results.json; CLI exit codes; output."""

from __future__ import annotations

import io
import json
import re

from conftest import load, statuses
from typer.testing import CliRunner

from wfsql.api import Project, RunOptions
from wfsql.cli import app
from wfsql.console import Console

# raw (a null id, error test) -> staged -> final ; clean -> clean_child ; warned (warn test) -> warned_child
DAG_PROJECT = {
    "models/raw.sql": "select * from (values (1), (null), (3)) as t(id)",
    "models/staged.sql": "select * from {{ ref('raw') }}",
    "models/final.sql": "select * from {{ ref('staged') }}",
    "models/clean.sql": "select range as id from range(3)",
    "models/clean_child.sql": "select * from {{ ref('clean') }}",
    "models/warned.sql": "select null as id",
    "models/warned_child.sql": "select * from {{ ref('warned') }}",
    "models/schema.yml": """
        models:
          - name: raw
            columns:
              - name: id
                tests: [not_null]
          - name: staged
            columns:
              - name: id
                tests: [unique]
          - name: clean
            columns:
              - name: id
                tests: [not_null, unique]
          - name: warned
            columns:
              - name: id
                tests:
                  - not_null: {severity: warn}
    """,
}


def test_build_skips_downstream_of_a_failed_error_test(make_project):
    root = make_project(DAG_PROJECT, name="t")
    results = load(root).build()
    got = statuses(results)
    assert got["raw"] == "success"
    assert got["not_null_raw_id"] == "fail"
    assert got["staged"] == "skipped"
    assert got["final"] == "skipped"
    assert got["unique_staged_id"] == "skipped"
    # an independent branch still runs, and a warn test does not block
    assert got["clean"] == got["clean_child"] == "success"
    assert got["not_null_clean_id"] == got["unique_clean_id"] == "pass"
    assert got["not_null_warned_id"] == "warn"
    assert got["warned_child"] == "success"
    skipped = {r.name: r.message for r in results.results}["staged"]
    assert "staged skipped: upstream not_null_raw_id failed" in skipped
    assert not results.success


def test_build_runs_downstream_once_the_test_passes(make_project):
    root = make_project({**DAG_PROJECT, "models/raw.sql": "select * from (values (1), (2)) as t(id)"}, name="t")
    results = load(root).build()
    assert results.success
    got = statuses(results)
    assert got["staged"] == got["final"] == "success"
    assert got["unique_staged_id"] == "pass"
    # the test ran before the model it gates
    order = [r.name for r in results.results]
    assert order.index("not_null_raw_id") < order.index("staged")


def test_test_select_runs_only_that_models_tests(make_project):
    root = make_project(DAG_PROJECT, name="t")
    load(root).run()
    got = statuses(load(root).test(RunOptions(select=("clean",))))
    assert got == {"not_null_clean_id": "pass", "unique_clean_id": "pass"}
    got = statuses(load(root).test(RunOptions(select=("raw",))))
    assert got == {"not_null_raw_id": "fail"}
    got = statuses(load(root).test(RunOptions(select=("clean",), exclude=("unique_clean_id",))))
    assert got == {"not_null_clean_id": "pass"}


def test_test_without_select_runs_every_test_and_no_model(make_project):
    root = make_project(DAG_PROJECT, name="t")
    load(root).run()
    results = load(root).test()
    assert {r.resource_type for r in results.results} == {"test"}
    assert len(results.results) == 5


def test_run_results_records_tests(make_project):
    root = make_project(DAG_PROJECT, name="t")
    load(root).build()
    payload = json.loads((root / "target" / "run_results.json").read_text())
    assert payload["metadata"]["command"] == "build"
    by_id = {r["unique_id"]: r for r in payload["results"]}
    failed = by_id["test.t.not_null_raw_id"]
    assert (failed["status"], failed["failures"], failed["resource_type"]) == ("fail", 1, "test")
    assert failed["compiled_path"] == "target/compiled/t/tests/not_null_raw_id.sql"
    assert (by_id["test.t.unique_clean_id"]["status"], by_id["test.t.unique_clean_id"]["failures"]) == ("pass", 0)
    assert by_id["test.t.not_null_warned_id"]["status"] == "warn"
    assert by_id["model.t.staged"]["status"] == "skipped"


def test_compiled_test_sql_is_written(make_project):
    root = make_project(DAG_PROJECT, name="t")
    load(root).build()
    sql = (root / "target/compiled/t/tests/not_null_raw_id.sql").read_text()
    assert re.search(r'from "main"\."raw"\s+where id is null', sql), sql


def test_console_shows_pass_fail_sample_path_and_totals(make_project):
    root = make_project(
        {
            **DAG_PROJECT,
            "models/raw.sql": "select * from (values (1, 'keep'), (null, 'marker-row')) as t(id, label)",
        },
        name="t",
    )
    buffer = io.StringIO()
    Project.load(root, console=Console(file=buffer, width=200)).build()
    out = buffer.getvalue()
    assert re.search(r"PASS\s+not_null_clean_id", out)
    assert re.search(r"FAIL\s+not_null_raw_id: got 1 failing row\(s\)", out)
    assert re.search(r"WARN\s+not_null_warned_id", out)
    assert "1 failing rows" in out
    assert "failing rows (sample)" in out
    assert "marker-row" in out and "keep" not in out  # the sample holds the failing row only
    assert "target/compiled/t/tests/not_null_raw_id.sql" in out
    assert "not_null_raw_id: not_null_raw_id" not in out  # the summary names each failure once
    assert re.search(r"Finished build of 12 node\(s\).*5 ok.*2 pass.*1 warn.*1 fail.*3 skip", out), out


def test_cli_exit_codes(make_project):
    root = make_project(DAG_PROJECT, name="t")
    runner = CliRunner()
    result = runner.invoke(app, ["build", "--project-dir", str(root)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "not_null_raw_id" in result.output
    result = runner.invoke(app, ["test", "--project-dir", str(root), "--select", "clean"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["test", "--project-dir", str(root), "--select", "warned"])
    assert result.exit_code == 0, result.output  # a warning is not a failure
    assert "WARN" in result.output
    result = runner.invoke(app, ["test", "--project-dir", str(root), "--select", "raw"])
    assert result.exit_code == 1, result.output
