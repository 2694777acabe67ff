"""Runs: atomic builds, skipping downstream of failures, threads, the run lock, artifacts, reuse."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import database_path, load, query, statuses, write_files

from wfsql.adapter import RunLock
from wfsql.api import RunOptions
from wfsql.errors import DatabaseLockedError

FAILING_TABLE = "{{ config(materialized='table') }}select cast(v as integer) as v from (values ('1'), ('x')) t(v)"


def test_failing_table_keeps_previous_rows_and_skips_downstream(make_project):
    root = make_project(
        {
            "models/t.sql": "{{ config(materialized='table') }}select * from range(3) r(v)",
            "models/child.sql": "{{ config(materialized='table') }}select count(*) as n from {{ ref('t') }}",
            "models/grandchild.sql": "select * from {{ ref('child') }}",
            "models/other.sql": "{{ config(materialized='table') }}select 42 as answer",
        }
    )
    assert load(root).run().success
    write_files(
        root,
        {"models/t.sql": FAILING_TABLE, "models/other.sql": "{{ config(materialized='table') }}select 43 as answer"},
    )
    results = load(root, threads=2).run()
    assert not results.success
    assert statuses(results) == {"t": "error", "child": "skipped", "grandchild": "skipped", "other": "success"}
    # the previous version of t is intact: same rows, still a table
    assert query(root, "select v from t order by v") == [(0,), (1,), (2,)]
    assert query(root, "select n from child") == [(3,)]
    assert query(root, "select answer from other") == [(43,)]
    # no temporary relation is left behind
    names = {row[0] for row in query(root, "select table_name from duckdb_tables() where schema_name = 'main'")}
    assert names == {"t", "child", "other"}
    run_results = json.loads((root / "target" / "run_results.json").read_text())
    by_name = {r["name"]: r for r in run_results["results"]}
    assert by_name["child"]["status"] == "skipped"
    assert "upstream t failed" in by_name["grandchild"]["message"]  # the culprit, not the skipped child


def test_failed_state_is_not_recorded(make_project):
    """A failed build must not update the stored fingerprint, or the next run would wrongly reuse it."""
    root = make_project({"models/v.sql": "select 1 as id"})
    load(root).run()
    write_files(root, {"models/v.sql": "select * from nowhere_table"})
    assert not load(root).run().success
    write_files(root, {"models/v.sql": "select 1 as id"})
    results = load(root).run()
    assert statuses(results) == {"v": "reused"}  # back to the SQL that was last built
    write_files(root, {"models/v.sql": "select 2 as id"})
    assert statuses(load(root).run()) == {"v": "success"}
    assert query(root, "select id from v") == [(2,)]


def _wide_project(make_project, name: str) -> Path:
    files = {"models/root.sql": "{{ config(materialized='table') }}select * from range(100) r(i)"}
    for k in range(8):
        files[f"models/mid_{k}.sql"] = (
            "{{ config(materialized='" + ("table" if k % 2 else "view") + "') }}"
            f"select i, i * {k} as v from {{{{ ref('root') }}}} where i % 8 <> {k}"
        )
    union = " union all ".join(f"select {k} as k, sum(v) as s from {{{{ ref('mid_{k}') }}}}" for k in range(8))
    files["models/joined.sql"] = "{{ config(materialized='table') }}" + union
    files["models/top.sql"] = (
        "{{ config(materialized='table') }}select sum(s) as total, count(*) as n from {{ ref('joined') }} "
        "cross join (select count(*) from {{ ref('mid_0') }})"
    )
    return make_project(files, name=name)


def test_threads_give_the_same_results(make_project):
    one = _wide_project(make_project, "one")
    four = _wide_project(make_project, "four")
    serial = load(one, threads=1).run()
    parallel = load(four, threads=4).run()
    assert serial.success and parallel.success
    assert statuses(serial) == statuses(parallel)
    assert len(parallel.results) == 11
    for sql in ("select * from joined order by k", "select * from top", "select * from mid_3 order by i"):
        assert query(one, sql) == query(four, sql)
    # dependency order held in the parallel run
    order = [r.name for r in parallel.results]
    assert order[0] == "root"
    assert order.index("joined") > max(order.index(f"mid_{k}") for k in range(8))
    assert order[-1] == "top"


def test_parallel_run_respects_order_with_failures(make_project):
    root = _wide_project(make_project, "fails")
    write_files(root, {"models/mid_5.sql": FAILING_TABLE})
    results = load(root, threads=4).run()
    got = statuses(results)
    assert got["mid_5"] == "error"
    assert got["joined"] == "skipped" and got["top"] == "skipped"
    assert all(got[f"mid_{k}"] == "success" for k in range(8) if k != 5)


def test_run_lock_held(make_project):
    root = make_project({"models/a.sql": "select 1 as id"})
    project = load(root)
    with RunLock(project.config.database), pytest.raises(DatabaseLockedError) as info:
        project.run()
    message = str(info.value)
    assert "another wfsql command" in message
    assert f"pid {__import__('os').getpid()}" in message
    assert project.config.database in message
    assert "hint:" in message
    # released again: the next run works
    assert project.run().success


def test_database_open_in_another_process(make_project):
    root = make_project({"models/a.sql": "select 1 as id"})
    db = database_path(root)
    db.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import duckdb, sys, time
            con = duckdb.connect({str(db)!r})
            con.execute("create table held(x int)")
            print("ready", flush=True)
            sys.stdin.readline()
        """),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLockedError) as info:
            load(root).run()
        assert "is open in another process" in str(info.value)
        assert str(db) in str(info.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert load(root).run().success


def test_manifest_json(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "{{ config(materialized='table', tags=['t1']) }}select * from {{ ref('a') }}",
            "seeds/s.csv": "x\n1\n",
            "models/src.yml": "sources:\n  - name: raw\n    tables:\n      - name: ev\n",
        }
    )
    load(root).compile()
    manifest = json.loads((root / "target" / "manifest.json").read_text())
    assert manifest["metadata"]["project_name"] == "proj"
    nodes = manifest["nodes"]
    assert set(nodes) == {"model.proj.a", "model.proj.b", "seed.proj.s", "source.proj.raw.ev"}
    b = nodes["model.proj.b"]
    assert b["materialized"] == "table"
    assert b["depends_on"]["nodes"] == ["model.proj.a"]
    assert b["compiled_code"] == 'select * from "main"."a"'
    assert "ref('a')" in b["raw_code"]
    assert b["tags"] == ["t1"]
    assert b["relation_name"] == '"main"."b"'
    assert b["compiled_path"] == "target/compiled/proj/models/b.sql"
    assert (root / b["compiled_path"]).read_text() == 'select * from "main"."a"\n'
    assert len(b["fingerprint"]) == 32 and b["checksum"] == b["fingerprint"]
    assert manifest["parent_map"]["model.proj.b"] == ["model.proj.a"]
    assert manifest["parent_map"]["model.proj.a"] == []
    assert manifest["child_map"]["model.proj.a"] == ["model.proj.b"]
    assert nodes["seed.proj.s"]["resource_type"] == "seed"
    assert nodes["source.proj.raw.ev"]["relation_name"] == '"raw"."ev"'


def test_manifest_json_follows_documentation_changes(make_project):
    """Descriptions and Jinja comments change no fingerprint, but manifest.json must still show them."""
    root = make_project(
        {
            "models/a.sql": "select 1 as id {# v1 #}",
            "models/schema.yml": "models:\n  - name: a\n    description: first\n",
        }
    )

    def node_json() -> dict:
        load(root).compile()
        return json.loads((root / "target" / "manifest.json").read_text())["nodes"]["model.proj.a"]

    assert node_json()["description"] == "first"
    write_files(root, {"models/schema.yml": "models:\n  - name: a\n    description: second\n"})
    assert node_json()["description"] == "second"
    write_files(root, {"models/a.sql": "select 1 as id {# v2 #}"})
    assert "v2" in node_json()["raw_code"]


def test_run_results_json(make_project):
    root = make_project(
        {
            "models/t.sql": "{{ config(materialized='table') }}select * from range(5) r(i)",
            "models/v.sql": "select * from {{ ref('t') }}",
            "models/bad.sql": "select * from missing_relation_xyz",
        }
    )
    load(root).run()
    payload = json.loads((root / "target" / "run_results.json").read_text())
    assert payload["metadata"]["command"] == "run"
    assert payload["elapsed_time"] > 0
    results = {r["unique_id"]: r for r in payload["results"]}
    assert set(results) == {"model.proj.t", "model.proj.v", "model.proj.bad"}
    t = results["model.proj.t"]
    assert t["status"] == "success"
    assert t["rows_affected"] == 5
    assert t["execution_time"] > 0
    assert t["started_at"] and t["completed_at"] and t["started_at"] <= t["completed_at"]
    assert t["compiled_path"] == "target/compiled/proj/models/t.sql"
    bad = results["model.proj.bad"]
    assert bad["status"] == "error"
    assert "missing_relation_xyz" in bad["message"]


def test_fingerprints_follow_parents(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "select * from {{ ref('a') }}",
            "models/c.sql": "select * from {{ ref('b') }}",
            "models/other.sql": "select 2 as id",
        }
    )
    before = {n.name: n.fingerprint for n in load(root).compile().nodes.values()}
    write_files(root, {"models/a.sql": "select 1 as id, 2 as two"})
    after = {n.name: n.fingerprint for n in load(root).compile().nodes.values()}
    assert before["a"] != after["a"]
    assert before["b"] != after["b"]  # b's SQL did not change, its parent did
    assert before["c"] != after["c"]
    assert before["other"] == after["other"]
    # a config change is a change too
    write_files(root, {"models/other.sql": "{{ config(tags=['x']) }}select 2 as id"})
    assert load(root).compile().nodes["model.proj.other"].fingerprint != after["other"]


def test_unchanged_views_are_reused(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "select * from {{ ref('a') }}",
            "models/t.sql": "{{ config(materialized='table') }}select * from {{ ref('b') }}",
            "models/other.sql": "select 2 as id",
        }
    )
    assert set(statuses(load(root).run()).values()) == {"success"}
    second = load(root).run()
    assert statuses(second) == {"a": "reused", "b": "reused", "t": "success", "other": "reused"}
    write_files(root, {"models/a.sql": "select 5 as id"})
    third = load(root).run()
    assert statuses(third) == {"a": "success", "b": "success", "t": "success", "other": "reused"}
    assert query(root, "select id from t") == [(5,)]
    # --full-refresh rebuilds views too
    assert set(statuses(load(root).run(RunOptions(full_refresh=True))).values()) == {"success"}


def test_view_dropped_outside_wfsql_is_rebuilt(make_project):
    root = make_project({"models/a.sql": "select 1 as id"})
    load(root).run()
    import duckdb

    with duckdb.connect(str(database_path(root))) as con:
        con.execute("drop view a")
    assert statuses(load(root).run()) == {"a": "success"}
    assert query(root, "select id from a") == [(1,)]


def test_state_modified_selection(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "select * from {{ ref('a') }}",
            "models/c.sql": "select * from {{ ref('b') }}",
            "models/other.sql": "select 2 as id",
        }
    )
    load(root).run()
    assert load(root).select(["state:modified"]) == set()
    write_files(root, {"models/b.sql": "select id + 1 as id from {{ ref('a') }}"})
    modified = load(root).select(["state:modified"])
    assert modified == {"model.proj.b", "model.proj.c"}
    write_files(root, {"models/new_one.sql": "select 3 as id"})
    assert load(root).select(["state:new"]) == {"model.proj.new_one"}
    results = load(root).run(RunOptions(select=["state:modified"]))
    assert set(statuses(results)) == {"b", "c", "new_one"}
    assert query(root, "select id from c") == [(2,)]


def test_state_selection_without_a_database(make_project):
    root = make_project({"models/a.sql": "select 1 as id"})
    assert load(root).select(["state:modified"]) == {"model.proj.a"}
    assert not database_path(root).exists()


def test_compile_is_pure(make_project):
    root = make_project(
        {
            "models/a.sql": "{{ config(materialized='table') }}select 1 as id",
            "models/b.sql": "select * from {{ ref('a') }}",
            "seeds/s.csv": "x\n1\n",
        }
    )
    project = load(root)
    manifest = project.compile()
    project.ls(["+b"])
    assert len(manifest.nodes) == 3
    assert not database_path(root).exists()
    assert not list(root.rglob("*.duckdb*"))
    assert (root / "target" / "manifest.json").exists()


def test_run_is_quick_for_a_small_project(make_project):
    """Not a benchmark: a guard against per-node overhead growing by orders of magnitude."""
    files = {
        f"models/m{i}.sql": f"select {i} as id" + (f" union all select * from {{{{ ref('m{i - 1}') }}}}" if i else "")
        for i in range(30)
    }
    root = make_project(files)
    started = time.perf_counter()
    assert load(root, threads=2).run().success
    assert time.perf_counter() - started < 20
    assert query(root, "select count(*) from m29") == [(30,)]
