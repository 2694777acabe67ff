"""The `wfsql` command: init → run on the template, every core command, global options, exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import database_path, query, write_files
from typer.testing import CliRunner

from wfsql import cli
from wfsql.cli import app
from wfsql.errors import DependencyError, ProjectConfigError

_SCRIPT = Path(sys.executable).with_name("wfsql")
# The installed console script when it sits beside this Python (a venv), else the same entry point via -m.
WFSQL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wfsql.cli"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Call cli.main() as the console script does; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["wfsql", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as info:
        cli.main()
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def test_init_then_run_the_template(runner, tmp_path):
    target = tmp_path / "My Demo"
    result = invoke(runner, "init", target)
    assert result.exit_code == 0, result.output
    assert (target / "wfsql_project.yml").read_text().count("name: my_demo") == 1
    result = invoke(runner, "run", "--project-dir", target)
    assert result.exit_code == 0, result.output
    run_results = json.loads((target / "target" / "run_results.json").read_text())
    assert run_results["results"] and all(r["status"] == "success" for r in run_results["results"])
    tables = {row[0] for row in query(target, "select table_name from duckdb_tables()")}
    assert {"feedback_candidates", "feedback_summary"} <= tables
    assert query(target, "select count(*) > 0 from stg_turns") == [(True,)]


def test_init_refuses_a_non_empty_folder(runner, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    result = invoke(runner, "init", tmp_path / "x")
    assert result.exit_code != 0
    assert "exists and is not empty" in str(result.exception)


@pytest.fixture
def project(make_project) -> Path:
    return make_project(
        {
            "seeds/people.csv": "id,name\n1,ann\n2,bob\n3,cy\n",
            "models/nums.sql": "{{ config(materialized='table') }}select i from range({{ var('n', 10) }}) r(i)",
            "models/names.sql": "select name from {{ ref('people') }}",
            "models/sub/tagged.sql": "{{ config(tags=['t', 'daily']) }}select count(*) as c from {{ ref('nums') }}",
        },
        config="""
        targets:
          dev:
            database: target/dev.duckdb
          prod:
            database: target/prod.duckdb
        default_target: dev
        """,
    )


def dev_db(root: Path) -> Path:
    return root / "target" / "dev.duckdb"


def test_compile_writes_artifacts_and_no_database(runner, project):
    result = invoke(runner, "compile", "--project-dir", project)
    assert result.exit_code == 0, result.output
    assert "3 models" in result.output and "1 seed" in result.output
    assert (project / "target" / "manifest.json").is_file()
    assert (
        (project / "target" / "compiled" / "proj" / "models" / "nums.sql")
        .read_text()
        .startswith("select i from range(10)")
    )
    assert not dev_db(project).exists()


def test_test_before_any_build_says_build_first_and_creates_no_database(monkeypatch, capsys, project):
    code, _, err = run_main(monkeypatch, capsys, "test", "--project-dir", project)
    assert code == 2 and "nothing to test yet" in err and "wfsql build" in err
    assert not dev_db(project).exists()


def test_seed_run_show_ls_clean(runner, project):
    result = invoke(runner, "seed", "--project-dir", project)
    assert result.exit_code == 0, result.output
    result = invoke(runner, "run", "--project-dir", project, "--threads", "2", "--vars", "{n: 7}")
    assert result.exit_code == 0, result.output
    assert "Finished run" in result.output
    assert query(project, "select count(*) from nums", dev_db(project)) == [(7,)]

    result = invoke(runner, "show", "nums", "--limit", "3", "--project-dir", project)
    assert result.exit_code == 0, result.output
    assert "rows)" in result.output  # the title, "(first 3 rows)", wraps to the table's width
    cells = [line.strip("│ ").strip() for line in result.output.splitlines() if line.startswith("│")]
    assert cells == ["0", "1", "2"]

    result = invoke(runner, "ls", "--project-dir", project, "--select", "+tagged")
    assert result.exit_code == 0, result.output
    listed = [line.split() for line in result.output.strip().splitlines()]
    assert listed == [["model", "nums", "table"], ["model", "tagged", "view"]]
    result = invoke(runner, "ls", "--project-dir", project, "--resource-type", "seed")
    assert [line.split()[1] for line in result.output.strip().splitlines()] == ["people"]

    result = invoke(runner, "clean", "--project-dir", project)
    assert result.exit_code == 0, result.output
    assert not (project / "target" / "manifest.json").exists()
    assert not (project / "target" / "compiled").exists()
    assert not (project / "target" / "run_results.json").exists()
    assert dev_db(project).is_file()  # the database stays
    assert query(project, "select count(*) from nums", dev_db(project)) == [(7,)]


def test_global_target_option(runner, project):
    result = invoke(runner, "run", "--project-dir", project, "--target", "prod", "--select", "nums")
    assert result.exit_code == 0, result.output
    assert (project / "target" / "prod.duckdb").is_file()
    assert not dev_db(project).exists()
    run_results = json.loads((project / "target" / "run_results.json").read_text())
    assert run_results["args"]["target"] == "prod"


def test_threads_option_is_used(runner, project):
    result = invoke(runner, "run", "--project-dir", project, "--threads", "3", "--select", "nums")
    assert result.exit_code == 0, result.output
    assert "with 3 thread(s)" in result.output
    assert json.loads((project / "target" / "run_results.json").read_text())["args"]["threads"] == 3


def test_failed_run_exits_1(runner, project):
    write_files(project, {"models/broken.sql": "select * from no_such_table_anywhere"})
    result = invoke(runner, "run", "--project-dir", project, "--select", "broken")
    assert result.exit_code == 1
    assert "no_such_table_anywhere" in result.output


def test_user_error_through_the_typer_app_raises(runner, project):
    """`app` itself lets WfsqlError through; main() turns it into exit code 2 (next test)."""
    write_files(project, {"models/bad_ref.sql": "select * from {{ ref('numz') }}"})
    result = invoke(runner, "compile", "--project-dir", project)
    assert isinstance(result.exception, DependencyError)
    assert "did you mean 'nums'" in str(result.exception)


def test_main_exit_codes(monkeypatch, capsys, project):
    code, _, _ = run_main(monkeypatch, capsys, "compile", "--project-dir", project)
    assert code == 0
    code, _, err = run_main(monkeypatch, capsys, "run", "--project-dir", project, "--target", "staging")
    assert code == 2
    assert "unknown target 'staging'" in err
    write_files(project, {"models/bad_ref.sql": "select * from {{ ref('numz') }}"})
    code, _, err = run_main(monkeypatch, capsys, "run", "--project-dir", project)
    assert code == 2
    assert "Dependency error" in err and "did you mean 'nums'" in err
    (project / "models" / "bad_ref.sql").unlink()
    code, _, err = run_main(monkeypatch, capsys, "ls", "--project-dir", project, "--select", "tag:nope")
    assert code == 2
    assert "matches no node" in err
    code, _, err = run_main(monkeypatch, capsys, "ls", "--project-dir", project, "--select", "tag:dayli")
    assert code == 2 and "did you mean 'tag:daily'?" in err
    code, out, err = run_main(monkeypatch, capsys, "ls", "--project-dir", project, "--select", "nums,tagged")
    assert code == 0 and out == ""  # an intersection of two different models: empty, and said so
    assert "Nothing selected" in err and "a,b selects what both a and b select" in err
    code, _, err = run_main(monkeypatch, capsys, "run", "--project-dir", project, "--vars", "[1, 2]")
    assert code == 2
    assert "--vars must be a mapping" in err


def test_console_script_exit_codes(project):
    """The installed `wfsql` script: 0 ok, 1 failed run, 2 user error (message on stderr, no traceback)."""
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run(
        [*WFSQL, "run", "--project-dir", project, "-s", "nums"], capture_output=True, text=True, env=env, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    write_files(project, {"models/broken.sql": "{{ config(materialized='table') }}select cast('x' as integer) as n"})
    failed = subprocess.run(
        [*WFSQL, "run", "--project-dir", project, "-s", "broken"], capture_output=True, text=True, env=env, timeout=60
    )
    assert failed.returncode == 1
    (project / "wfsql_project.yml").write_text("name: proj\nthreads: lots\n")
    user_error = subprocess.run(
        [*WFSQL, "compile", "--project-dir", project], capture_output=True, text=True, env=env, timeout=60
    )
    assert user_error.returncode == 2
    assert "threads (line 2)" in user_error.stderr
    assert "Traceback" not in user_error.stderr


def test_missing_project_is_a_user_error(monkeypatch, capsys, tmp_path):
    code, _, err = run_main(monkeypatch, capsys, "compile", "--project-dir", tmp_path)
    assert code == 2
    assert "no wfsql_project.yml" in err


def test_a_command_from_inside_a_project_names_the_project_folder(monkeypatch, capsys, project):
    code, _, err = run_main(monkeypatch, capsys, "compile", "--project-dir", project / "models")
    assert code == 2
    assert "inside the project at" in err and f"--project-dir {project}" in err


def test_debug(runner, project, monkeypatch):
    # torch and the default model are looked up for real elsewhere; importing torch here would take seconds.
    from wfsql import diagnostics

    monkeypatch.setattr(diagnostics, "_torch_device", lambda: "stub device")
    monkeypatch.setattr(diagnostics, "_default_model", lambda: "stub model")
    result = invoke(runner, "debug", "--project-dir", project)
    assert result.exit_code == 0, result.output
    output = result.output
    assert "duckdb" in output and "sqlglot" in output
    assert "proj (wfsql)" in output
    assert str(dev_db(project).resolve()) in output
    assert "does not exist yet" in output
    assert "stub device" in output
    invoke(runner, "run", "--project-dir", project, "-s", "nums")
    result = invoke(runner, "debug", "--project-dir", project, "--target", "dev")
    assert re.search(r"opens; \d+ table\(s\)", result.output)


def test_unknown_project_config_error_type(runner, project):
    (project / "wfsql_project.yml").write_text("name: proj\nthreds: 2\n")
    result = invoke(runner, "compile", "--project-dir", project)
    assert isinstance(result.exception, ProjectConfigError)
    assert "did you mean 'threads'" in str(result.exception)


def test_database_path_default(runner, make_project):
    root = make_project({"models/a.sql": "select 1 as x"})
    assert invoke(runner, "run", "--project-dir", root).exit_code == 0
    assert database_path(root).is_file()
