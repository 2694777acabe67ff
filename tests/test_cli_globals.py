"""Options before the command, --fail-fast, and relative file paths resolved against the project."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from wfsql.api import Project, RunOptions
from wfsql.cli import _GLOBAL, app
from wfsql.console import Console


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "models").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / "people.csv").write_text("id,name\n1,ada\n2,bob\n")
    (root / "wfsql_project.yml").write_text("name: g\nvars: {label: default}\n")
    (root / "models" / "people.sql").write_text(
        "{{ config(materialized='table') }}\nselect *, '{{ var(\"label\") }}' as label from read_csv('data/people.csv')"
    )
    return root


def test_global_options_before_the_command(tmp_path: Path) -> None:
    root = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)  # relative paths in SQL must still resolve against the project folder
    try:
        result = CliRunner().invoke(app, ["--project-dir", str(root), "--vars", "{label: cli}", "run"])
    finally:
        os.chdir(cwd)
        _GLOBAL.clear()
    assert result.exit_code == 0, result.output
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        assert con.execute("select name, label from people order by id").fetchall() == [("ada", "cli"), ("bob", "cli")]


def test_fail_fast_skips_everything_after_the_first_failure(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "models" / "broken.sql").write_text("select * from no_such_table")
    for index in range(4):
        (root / "models" / f"independent_{index}.sql").write_text(f"select {index} as x")
    project = Project.load(root, threads=1, console=Console(quiet=True))
    results = project.run(RunOptions(fail_fast=True))
    by_name = {r.name: r for r in results.results}
    assert by_name["broken"].status == "error"
    skipped = [r for r in results.results if r.status == "skipped"]
    assert skipped and all("--fail-fast after broken failed" in r.message for r in skipped)
    # Without --fail-fast every independent model is built.
    again = Project.load(root, threads=1, console=Console(quiet=True)).run(RunOptions())
    assert {r.name for r in again.results if r.status in ("success", "reused")} >= {
        f"independent_{i}" for i in range(4)
    }


def test_cli_fail_fast_flag(tmp_path: Path) -> None:
    root = _project(tmp_path)
    (root / "models" / "broken.sql").write_text("select * from no_such_table")
    result = CliRunner().invoke(app, ["run", "--project-dir", str(root), "--threads", "1", "-x"])
    _GLOBAL.clear()
    assert result.exit_code == 1
    assert "error" in result.output.lower()
