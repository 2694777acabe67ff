"""wfsql.dag.DAG, and the dependencies compile finds (ref, source, and relations read directly)."""

from __future__ import annotations

import itertools

import pytest
from conftest import load

from wfsql.dag import DAG, CycleError

#   a ─┬─ b ─┬─ d ── e
#      └─ c ─┘
#   x ── y        (independent)
PARENTS = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": ["d"], "x": [], "y": ["x"]}


@pytest.fixture
def dag() -> DAG:
    return DAG(PARENTS)


def test_topological_order_respects_every_edge(dag: DAG):
    order = dag.topological_order()
    assert sorted(order) == sorted(PARENTS)
    position = {node: index for index, node in enumerate(order)}
    for node, parents in PARENTS.items():
        for parent in parents:
            assert position[parent] < position[node], (parent, node)


def test_topological_order_is_stable(dag: DAG):
    assert DAG(PARENTS).topological_order() == dag.topological_order()
    assert dag.topological_order() == ["a", "x", "b", "c", "y", "d", "e"]


def test_levels(dag: DAG):
    assert [sorted(level) for level in dag.levels()] == [["a", "x"], ["b", "c", "y"], ["d"], ["e"]]


def test_levels_use_the_deepest_parent():
    graph = DAG({"a": [], "b": ["a"], "c": ["a", "b"]})
    assert graph.levels() == [["a"], ["b"], ["c"]]


def test_parents_children_and_membership(dag: DAG):
    assert dag.parents("d") == ("b", "c")
    assert sorted(dag.children("a")) == ["b", "c"]
    assert "e" in dag and "zzz" not in dag
    assert len(dag) == 7


def test_parents_only_named_as_parents_become_nodes():
    graph = DAG({"child": ["outside"]})
    assert set(graph.nodes) == {"child", "outside"}
    assert graph.parents("outside") == ()


def test_self_loops_and_duplicate_edges_are_ignored():
    graph = DAG({"a": ["a"], "b": ["a", "a"]})
    assert graph.parents("a") == ()
    assert graph.parents("b") == ("a",)
    assert graph.topological_order() == ["a", "b"]


def test_ancestors_and_descendants(dag: DAG):
    assert dag.ancestors("e") == {"a", "b", "c", "d"}
    assert dag.ancestors("e", depth=1) == {"d"}
    assert dag.ancestors("e", depth=2) == {"b", "c", "d"}
    assert dag.ancestors("a") == set()
    assert dag.descendants("a") == {"b", "c", "d", "e"}
    assert dag.descendants("a", depth=1) == {"b", "c"}
    assert dag.descendants("a", depth=2) == {"b", "c", "d"}
    assert dag.descendants("x") == {"y"}
    assert dag.descendants("a", depth=0) == set()


def test_find_cycle_returns_a_closed_path():
    graph = DAG({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    cycle = graph.find_cycle()
    assert cycle is not None
    assert cycle[0] == cycle[-1]
    assert set(cycle) == {"a", "b", "c"}
    assert len(cycle) == 4
    for parent, child in itertools.pairwise(cycle):
        assert parent in graph.parents(child)


def test_no_cycle(dag: DAG):
    assert dag.find_cycle() is None


def test_topological_order_raises_with_the_cycle():
    graph = DAG({"a": [], "b": ["a", "d"], "c": ["b"], "d": ["c"]})
    with pytest.raises(CycleError) as info:
        graph.topological_order()
    assert set(info.value.path) == {"b", "c", "d"}
    assert info.value.path[0] == info.value.path[-1]
    with pytest.raises(CycleError):
        graph.levels()


def test_find_cycle_on_a_deep_chain_does_not_recurse():
    n = 20_000
    parents = {f"n{i}": [f"n{i - 1}"] for i in range(1, n)}
    parents["n0"] = [f"n{n - 1}"]
    cycle = DAG(parents).find_cycle()
    assert cycle is not None and len(cycle) == n + 1


def test_subgraph_keeps_ancestry_through_dropped_nodes(dag: DAG):
    sub = dag.subgraph(["a", "d", "e", "y"])
    assert set(sub.nodes) == {"a", "d", "e", "y"}
    assert sub.parents("d") == ("a",)  # through b and c
    assert sub.parents("e") == ("d",)
    assert sub.parents("y") == ()  # x was dropped and has no kept ancestor
    assert sub.topological_order().index("a") < sub.topological_order().index("e")


# ------------------------------------------------------------------------- compile dependencies


def test_dependencies_from_ref_and_source(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "select * from {{ ref('a') }} join {{ source('raw', 't') }} using (id)",
            "models/c.sql": "select * from {{ ref('b') }} union all select * from {{ ref('a') }}",
            "models/src.yml": "sources:\n  - name: raw\n    tables:\n      - name: t\n",
        }
    )
    manifest = load(root).compile()
    assert set(manifest.dag.parents("model.proj.b")) == {"model.proj.a", "source.proj.raw.t"}
    assert set(manifest.dag.parents("model.proj.c")) == {"model.proj.a", "model.proj.b"}
    assert manifest.dag.descendants("source.proj.raw.t") == {"model.proj.b", "model.proj.c"}
    assert manifest.warnings == []


@pytest.mark.parametrize("reference", ["main.a", "a", "MAIN.A", '"main"."a"'])
def test_direct_relation_read_warns_and_adds_dependency(make_project, reference):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": f"select * from {reference}",
        }
    )
    manifest = load(root).compile()
    assert manifest.dag.parents("model.proj.b") == ("model.proj.a",)
    assert len(manifest.warnings) == 1
    warning = manifest.warnings[0]
    assert "models/b.sql" in warning and "'b'" in warning
    assert "ref('a')" in warning
    # and the run builds a before b because of it
    results = load(root, threads=1).run()
    assert [r.name for r in results.results] == ["a", "b"]
    assert results.success


def test_cte_named_like_a_model_is_not_a_dependency(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "with a as (select 2 as id) select * from a",
        }
    )
    manifest = load(root).compile()
    assert manifest.dag.parents("model.proj.b") == ()
    assert manifest.warnings == []


def test_direct_read_of_a_custom_schema_model(make_project):
    root = make_project(
        {
            "models/a.sql": "{{ config(schema='mart') }}select 1 as id",
            "models/b.sql": "select * from mart.a",
            "models/c.sql": "select * from a",  # main.a is not a model here
        }
    )
    manifest = load(root).compile()
    assert manifest.dag.parents("model.proj.b") == ("model.proj.a",)
    assert manifest.dag.parents("model.proj.c") == ()
