"""Shared fixtures: small wfsql projects written into tmp_path, and helpers to load, run and query them."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from wfsql.api import Project
from wfsql.console import Console

ProjectFactory = Callable[..., Path]


def write_files(root: Path, files: dict[str, str | bytes]) -> None:
    """Write `files` (relative path → text, dedented; bytes as they are) under root."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """make_project(files, name="proj", config="extra yml") → the project root in tmp_path.

    Writes `wfsql_project.yml` with `name:` plus `config` unless `files` brings its own.
    """

    def make(files: dict[str, str | bytes] | None = None, *, name: str = "proj", config: str = "") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        files = dict(files or {})
        if "wfsql_project.yml" not in files:
            files["wfsql_project.yml"] = f"name: {name}\n" + textwrap.dedent(config).lstrip("\n")
        write_files(root, files)
        return root

    return make


def load(root: Path, **kwargs: Any) -> Project:
    """A quiet Project (no console noise in test output)."""
    kwargs.setdefault("console", Console(quiet=True))
    return Project.load(root, **kwargs)


def database_path(root: Path) -> Path:
    return root / "target" / "wfsql.duckdb"


def query(root: Path | str, sql: str, database: Path | str | None = None) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the project's database, opened read-only and closed again."""
    path = str(database) if database is not None else str(database_path(Path(root)))
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(sql).fetchall()


def statuses(results: Any) -> dict[str, str]:
    """name → status of a RunResults."""
    return {r.name: r.status for r in results.results}


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny randomly initialised model (the default model's tokenizer) for fast LLM-path tests, per module."""
    pytest.importorskip("torch")
    from wfsql.llm.models import ModelUnavailableError, make_tiny_model

    try:
        return make_tiny_model(tmp_path_factory.mktemp("tiny"))
    except ModelUnavailableError as error:
        pytest.skip(f"the tiny model borrows the default model's tokenizer: {error}")
