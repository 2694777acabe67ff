"""Python models: dependencies read without running them, results written like tables, clear errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.errors import WfsqlError


def _project(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "wfsql_project.yml").write_text("name: py\nmodels:\n  +materialized: view\n")
    for name, text in files.items():
        path = tmp_path / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


STATS = """
import pyarrow as pa

def model(wf, con):
    rows = wf.ref("numbers").fetchall()
    return pa.table({"n": [len(rows)], "total": [sum(r[0] for r in rows)], "scale": [wf.var("scale", 1)]})
"""


def test_python_model_runs_between_sql_models(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        {
            "numbers.sql": "select range as x from range(10)",
            "stats.py": STATS,
            "doubled.sql": "select total * 2 as doubled from {{ ref('stats') }}",
        },
    )
    project = Project.load(root, vars={"scale": 3}, console=Console(quiet=True))
    manifest = project.compile()
    assert manifest.nodes["model.py.stats"].depends_on == ("model.py.numbers",)
    assert manifest.nodes["model.py.doubled"].depends_on == ("model.py.stats",)
    results = project.run(RunOptions())
    assert results.success
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        assert con.execute("select n, total, scale from stats").fetchall() == [(10, 45, 3)]
        assert con.execute("select table_type from information_schema.tables where table_name='stats'").fetchall() == [
            ("BASE TABLE",)
        ]
        assert con.execute("select doubled from doubled").fetchall() == [(90,)]


def test_unknown_ref_in_python_model_suggests_a_name(tmp_path: Path) -> None:
    root = _project(tmp_path, {"numbers.sql": "select 1 as x", "stats.py": STATS.replace('"numbers"', '"numbrs"')})
    with pytest.raises(WfsqlError, match="did you mean 'numbers'"):
        Project.load(root, console=Console(quiet=True)).compile()


def test_python_model_cannot_be_a_view(tmp_path: Path) -> None:
    root = _project(
        tmp_path,
        {
            "numbers.sql": "select 1 as x",
            "stats.py": "def model(wf, con):\n    wf.config(materialized='view')\n    return []\n",
        },
    )
    with pytest.raises(WfsqlError, match="must be materialized as a table"):
        Project.load(root, console=Console(quiet=True)).compile()


def test_python_syntax_error_names_the_file(tmp_path: Path) -> None:
    root = _project(tmp_path, {"broken.py": "def model(wf, con)\n    return []\n"})
    with pytest.raises(WfsqlError, match="Python syntax error") as info:
        Project.load(root, console=Console(quiet=True)).compile()
    assert "broken.py" in info.value.render()


def test_wrong_return_type_is_a_clear_run_error(tmp_path: Path) -> None:
    root = _project(tmp_path, {"odd.py": "def model(wf, con):\n    return 42\n"})
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert not results.success
    assert "returned int" in results.results[0].message
