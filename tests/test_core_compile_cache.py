"""The compile cache in target/: warm compiles skip Jinja and sqlglot, and notice every input change."""

from __future__ import annotations

import pytest
from conftest import load, write_files

from wfsql import compiler
from wfsql.compile_cache import CACHE_FILE
from wfsql.renderer import Renderer

FILES = {
    "macros/m.sql": "{% macro shout(x) %}upper({{ x }}){% endmacro %}",
    "models/a.sql": "select {{ var('n') }} as n, {{ shout(\"'a'\") }} as s",
    "models/b.sql": "select * from {{ ref('a') }}",
    "models/c.sql": "{% set cols = ['n', 's'] %}select {{ cols | join(', ') }} from {{ ref('b') }}",
    "models/e.sql": "select '{{ env_var('WFSQL_CACHE_TEST', 'unset') }}' as e",
}


@pytest.fixture
def counted(monkeypatch):
    """Counts of real renders and SQL parses done by compile."""
    counts = {"render": 0, "parse": 0}
    real_render, real_analyze = Renderer.render, compiler.analyze_sql

    def render(self, *args, **kwargs):
        counts["render"] += 1
        return real_render(self, *args, **kwargs)

    def analyze(sql):
        counts["parse"] += 1
        return real_analyze(sql)

    monkeypatch.setattr(Renderer, "render", render)
    monkeypatch.setattr(compiler, "analyze_sql", analyze)
    return counts


def fingerprints(root, **kwargs) -> dict[str, str]:
    return {n.name: n.fingerprint for n in load(root, **kwargs).compile().nodes.values()}


def sql_of(root, name: str, **kwargs) -> str:
    return load(root, **kwargs).compile().nodes[f"model.proj.{name}"].compiled_sql


def test_warm_compile_is_identical_and_skips_work(make_project, counted, monkeypatch):
    monkeypatch.delenv("WFSQL_CACHE_TEST", raising=False)
    root = make_project(FILES, config="vars:\n  n: 1\n")
    cold = fingerprints(root)
    assert (root / "target" / CACHE_FILE).is_file()
    assert counted == {"render": 4, "parse": 4}
    warm = fingerprints(root)
    assert warm == cold
    assert counted == {"render": 4, "parse": 4}  # nothing rendered or parsed again


def test_changed_file_is_rendered_again_alone(make_project, counted):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    before = fingerprints(root)
    write_files(root, {"models/c.sql": "select n from {{ ref('b') }}"})
    after = fingerprints(root)
    assert counted["render"] == 5
    assert after["c"] != before["c"]
    assert {k: v for k, v in after.items() if k != "c"} == {k: v for k, v in before.items() if k != "c"}


def test_changing_a_var_invalidates(make_project):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    assert "select 1 as n" in sql_of(root, "a")
    assert "select 2 as n" in sql_of(root, "a", vars={"n": 2})
    write_files(root, {"wfsql_project.yml": "name: proj\nvars:\n  n: 3\n"})
    assert "select 3 as n" in sql_of(root, "a")
    assert "select 1 as n" in sql_of(root, "a", vars={"n": 1})


def test_changing_a_macro_invalidates(make_project):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    assert "upper('a')" in sql_of(root, "a")
    write_files(root, {"macros/m.sql": "{% macro shout(x) %}lower({{ x }}){% endmacro %}"})
    assert "lower('a')" in sql_of(root, "a")


def test_changing_an_env_var_invalidates(make_project, monkeypatch):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    monkeypatch.setenv("WFSQL_CACHE_TEST", "first")
    assert "'first' as e" in sql_of(root, "e")
    monkeypatch.setenv("WFSQL_CACHE_TEST", "second")
    assert "'second' as e" in sql_of(root, "e")
    monkeypatch.delenv("WFSQL_CACHE_TEST")
    assert "'unset' as e" in sql_of(root, "e")


def test_changing_the_target_invalidates(make_project):
    root = make_project(
        {"models/a.sql": "select '{{ target.name }}' as t"},
        config="targets:\n  dev: {}\n  prod:\n    database: target/prod.duckdb\n",
    )
    assert "'dev' as t" in sql_of(root, "a")
    assert "'prod' as t" in sql_of(root, "a", target="prod")
    assert "'dev' as t" in sql_of(root, "a")


def test_folder_config_change_without_sql_change(make_project):
    """Configs from the project file are applied after rendering; a cached render must not hide them."""
    root = make_project({"models/sub/a.sql": "select 1 as x"})
    node = load(root).compile().nodes["model.proj.a"]
    assert node.materialized == "view"
    write_files(root, {"wfsql_project.yml": "name: proj\nmodels:\n  sub:\n    +materialized: table\n"})
    node2 = load(root).compile().nodes["model.proj.a"]
    assert node2.materialized == "table"
    assert node2.fingerprint != node.fingerprint


def test_corrupt_cache_is_ignored(make_project):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    cold = fingerprints(root)
    (root / "target" / CACHE_FILE).write_bytes(b"not a pickle")
    assert fingerprints(root) == cold
    (root / "target" / CACHE_FILE).write_bytes(b"")
    assert fingerprints(root) == cold


def test_cache_disabled_gives_the_same_result(make_project):
    root = make_project(FILES, config="vars:\n  n: 1\n")
    project = load(root)
    cached = {n.name: n.fingerprint for n in project.compile().nodes.values()}
    uncached = {n.name: n.fingerprint for n in compiler.compile_project(project.config, use_cache=False).nodes.values()}
    assert cached == uncached
