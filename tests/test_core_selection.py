"""Node selection: names, graph operators, methods, unions, intersections, --exclude."""

from __future__ import annotations

import pytest
from conftest import load, statuses

from wfsql.api import Project, RunOptions
from wfsql.errors import SelectionError

#  raw(seed) ── a ── b ── c ── d
#                     └── e (tag:nightly, models/sub)
#  x (models/sub, table, tag:nightly) ── y
FILES = {
    "seeds/raw.csv": "id\n1\n2\n",
    "models/a.sql": "select * from {{ ref('raw') }}",
    "models/b.sql": "{{ config(materialized='table') }}select * from {{ ref('a') }}",
    "models/c.sql": "select * from {{ ref('b') }}",
    "models/d.sql": "select * from {{ ref('c') }}",
    "models/sub/e.sql": "{{ config(tags=['nightly']) }}select * from {{ ref('b') }}",
    "models/sub/x.sql": "{{ config(materialized='table', tags=['nightly', 'core']) }}select 1 as id",
    "models/y.sql": "select * from {{ ref('x') }}",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    from conftest import write_files

    root = tmp_path_factory.mktemp("selection")
    write_files(root, {**FILES, "wfsql_project.yml": "name: proj\n"})
    return load(root)


def names(project: Project, select=(), exclude=(), **kwargs) -> set[str]:
    manifest = project.compile()
    return {manifest.nodes[uid].name for uid in project.select(select, exclude, **kwargs)}


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        (["c"], {"c"}),
        (["+c"], {"raw", "a", "b", "c"}),
        (["c+"], {"c", "d"}),
        (["b+"], {"b", "c", "d", "e"}),
        (["1+c"], {"b", "c"}),
        (["2+c"], {"a", "b", "c"}),
        (["b+1"], {"b", "c", "e"}),
        (["a+2"], {"a", "b", "c", "e"}),
        (["@c"], {"raw", "a", "b", "c", "d"}),
        (["@x"], {"x", "y"}),
        (["tag:nightly"], {"e", "x"}),
        (["tag:core"], {"x"}),
        (["tag:night*"], {"e", "x"}),
        (["path:models/sub"], {"e", "x"}),
        (["path:models/sub/x.sql"], {"x"}),
        (["config.materialized:table"], {"b", "x"}),
        (["resource_type:seed"], {"raw"}),
        (["a d"], {"a", "d"}),  # space: union
        (["a", "d"], {"a", "d"}),  # repeated --select: union
        (["tag:nightly,path:models/sub"], {"e", "x"}),
        (["tag:nightly,config.materialized:table"], {"x"}),  # comma: intersection
        (["b+,tag:nightly"], {"e"}),
        (["+d,+e"], {"raw", "a", "b"}),
        (["*"], {"raw", "a", "b", "c", "d", "e", "x", "y"}),
        (["proj.sub"], {"e", "x"}),  # fqn: project.folder
    ],
)
def test_select(project, select, expected):
    assert names(project, select) == expected


def test_everything_when_nothing_selected(project):
    assert names(project) == {"raw", "a", "b", "c", "d", "e", "x", "y"}


def test_exclude(project):
    assert names(project, ["b+"], ["tag:nightly"]) == {"b", "c", "d"}
    assert names(project, [], ["path:models/sub", "raw"]) == {"a", "b", "c", "d", "y"}
    assert names(project, ["+d"], ["a+"]) == {"raw"}


def test_resource_types(project):
    assert names(project, ["+c"], resource_types=["model"]) == {"a", "b", "c"}


def test_unknown_name_suggests(project):
    with pytest.raises(SelectionError) as info:
        project.select(["+cc"])
    assert "selector '+cc' matches no node" in str(info.value)
    assert "did you mean 'c'" in str(info.value)


def test_unknown_method_suggests(project):
    with pytest.raises(SelectionError) as info:
        project.select(["tags:nightly"])
    assert "unknown selector method 'tags'" in str(info.value)
    assert "did you mean 'tag'" in str(info.value)


def test_unreadable_selector(project):
    with pytest.raises(SelectionError, match="cannot read selector"):
        project.select(["a++b"])


def test_run_with_selection_builds_only_selected(make_project):
    root = make_project(FILES)
    project = load(root)
    project.seed()
    results = project.run(RunOptions(select=["+c"], exclude=["a"]))
    # a was excluded and never built, so b (reading a) fails and c is skipped
    assert statuses(results) == {"b": "error", "c": "skipped"}
    results = project.run(RunOptions(select=["+c"]))
    assert statuses(results) == {"a": "success", "b": "success", "c": "success"}
    assert statuses(project.run(RunOptions(select=["tag:nightly"]))) == {"e": "success", "x": "success"}


def test_ls_orders_by_dependencies(make_project):
    root = make_project(FILES)
    listed = [node.name for node in load(root).ls(["+d"])]
    assert listed == ["raw", "a", "b", "c", "d"]
    assert [node.name for node in load(root).ls(resource_type="seed")] == ["raw"]
