"""Seeds (CSV → tables) and sources (files read in place, or tables already in DuckDB)."""

from __future__ import annotations

import duckdb
import pytest
from conftest import database_path, load, query, statuses

from wfsql.api import RunOptions
from wfsql.errors import CompileError


def test_seed_loads_csv_tables(make_project):
    root = make_project(
        {
            "seeds/people.csv": "id,name,score\n1,ann,1.5\n2,bob,2.0\n",
            "seeds/lookup/codes.csv": "code,label\nA,alpha\n",
            "seeds/tabbed.tsv": "k\tv\n1\tone\n",
            "models/people_scores.sql": "{{ config(materialized='table') }}"
            "select name, score * 2 as s from {{ ref('people') }}",
        }
    )
    project = load(root)
    results = project.seed()
    assert statuses(results) == {"people": "success", "codes": "success", "tabbed": "success"}
    assert next(r for r in results.results if r.name == "people").rows_affected == 2
    assert query(root, "select id, name, score from people order by id") == [(1, "ann", 1.5), (2, "bob", 2.0)]
    assert query(root, "select label from codes") == [("alpha",)]
    assert query(root, "select k, v from tabbed") == [(1, "one")]
    assert project.run().success
    assert query(root, "select name, s from people_scores order by name") == [("ann", 3.0), ("bob", 4.0)]


def test_seed_reload_replaces_rows(make_project):
    root = make_project({"seeds/s.csv": "id\n1\n2\n"})
    load(root).seed()
    (root / "seeds" / "s.csv").write_text("id\n7\n")
    load(root).seed()
    assert query(root, "select id from s") == [(7,)]


def test_seed_config_column_types_and_schema(make_project):
    root = make_project(
        {"seeds/codes.csv": "code,n\n001,5\n"},
        config="""
        seeds:
          +schema: ref_data
          +column_types:
            code: varchar
        """,
    )
    load(root).seed()
    assert query(root, "select code, n from ref_data.codes") == [("001", 5)]


def test_run_does_not_load_seeds(make_project):
    root = make_project({"seeds/s.csv": "id\n1\n", "models/m.sql": "select 1 as x"})
    results = load(root).run()
    assert statuses(results) == {"m": "success"}
    assert query(root, "select count(*) from duckdb_tables() where table_name = 's'") == [(0,)]


def test_bad_seed_reports_the_file(make_project):
    root = make_project(
        {"seeds/bad.csv": "id,n\n1,2\n2,x\n"},
        config="seeds:\n  +column_types:\n    n: integer\n",
    )
    results = load(root).seed()
    assert not results.success
    assert "could not load seed seeds/bad.csv" in results.results[0].message


@pytest.fixture
def file_sources(make_project):
    root = make_project(
        {
            "data/users.csv": "id,name\n1,ann\n2,bob\n",
            "data/events.jsonl": '{"user_id": 1, "kind": "click"}\n{"user_id": 2, "kind": "view"}\n'
            '{"user_id": 1, "kind": "view"}\n',
            "data/weird_name.dat": "a|b\n1|2\n",
            "models/sources.yml": """
                sources:
                  - name: files
                    tables:
                      - name: users
                        path: data/users.csv
                      - name: events
                        path: data/events.jsonl
                      - name: scores
                        path: data/scores.parquet
                      - name: templated
                        path: "data/{identifier}.csv"
                        identifier: users
                      - name: explicit_reader
                        path: "read_csv('data/weird_name.dat', delim='|', header=true)"
                """,
            "models/report.sql": """
                {{ config(materialized='table') }}
                select u.name, count(e.kind) as events, max(s.score) as score
                from {{ source('files', 'users') }} u
                left join {{ source('files', 'events') }} e on e.user_id = u.id
                left join {{ source('files', 'scores') }} s on s.user_id = u.id
                group by u.name
                """,
            "models/others.sql": "select (select count(*) from {{ source('files', 'templated') }}) as t, "
            "(select sum(a + b) from {{ source('files', 'explicit_reader') }}) as r",
        }
    )
    with duckdb.connect() as con:
        con.execute(
            f"copy (select * from (values (1, 0.5::double), (2, 0.9::double)) v(user_id, score)) "
            f"to '{root / 'data' / 'scores.parquet'}' (format parquet)"
        )
    return root


def test_sources_on_csv_jsonl_parquet(file_sources, monkeypatch):
    root = file_sources
    # A reader call is passed to DuckDB verbatim, so its relative path is relative to the working directory.
    monkeypatch.chdir(root)
    manifest = load(root).compile()
    users = manifest.nodes["source.proj.files.users"]
    assert users.external_path == str(root.resolve() / "data" / "users.csv")
    assert users.relation_sql.startswith("read_csv_auto(")
    assert manifest.nodes["source.proj.files.events"].relation_sql.startswith("read_json_auto(")
    assert manifest.nodes["source.proj.files.scores"].relation_sql.startswith("read_parquet(")
    assert "data/users.csv" in manifest.nodes["source.proj.files.templated"].relation_sql
    assert set(manifest.dag.parents("model.proj.report")) == {
        "source.proj.files.users",
        "source.proj.files.events",
        "source.proj.files.scores",
    }
    assert load(root).run().success
    assert query(root, "select name, events, score from report order by name") == [("ann", 2, 0.5), ("bob", 1, 0.9)]
    assert query(root, "select t, r from others") == [(2, 3)]


def test_source_files_are_read_at_run_time(file_sources):
    root = file_sources
    load(root).run(RunOptions(select=["report"]))
    (root / "data" / "users.csv").write_text("id,name\n1,ann\n2,bob\n3,cy\n")
    load(root).run(RunOptions(select=["report"]))
    assert query(root, "select count(*) from report") == [(3,)]


def test_source_on_duckdb_table(make_project):
    root = make_project(
        {
            "models/src.yml": """
                sources:
                  - name: app
                    schema: app_schema
                    tables:
                      - name: orders
                      - name: order_items
                        identifier: items_v2
                """,
            "models/totals.sql": "select o.id, sum(i.qty) as qty from {{ source('app', 'orders') }} o "
            "join {{ source('app', 'order_items') }} i on i.order_id = o.id group by o.id",
        }
    )
    database_path(root).parent.mkdir(parents=True)
    with duckdb.connect(str(database_path(root))) as con:
        con.execute("create schema app_schema")
        con.execute("create table app_schema.orders as select * from (values (1), (2)) v(id)")
        con.execute(
            "create table app_schema.items_v2 as select * from (values (1, 3), (1, 4), (2, 1)) v(order_id, qty)"
        )
    manifest = load(root).compile()
    assert manifest.nodes["source.proj.app.order_items"].relation_sql == '"app_schema"."items_v2"'
    assert load(root).run().success
    assert query(root, "select id, qty from totals order by id") == [(1, 7), (2, 1)]


def test_source_schema_defaults_to_source_name(make_project):
    root = make_project(
        {
            "models/src.yml": "sources:\n  - name: raw\n    tables:\n      - name: t\n",
            "models/m.sql": "select * from {{ source('raw', 't') }}",
        }
    )
    assert load(root).compile().nodes["source.proj.raw.t"].relation_sql == '"raw"."t"'


def test_source_declared_twice(make_project):
    root = make_project(
        {
            "models/a.yml": "sources:\n  - name: raw\n    tables:\n      - name: t\n",
            "models/b.yml": "sources:\n  - name: raw\n    tables:\n      - name: t\n",
            "models/m.sql": "select 1 as x",
        }
    )
    with pytest.raises(CompileError, match=r"source raw\.t is declared twice"):
        load(root).compile()


def test_reader_format_overrides_the_extension(make_project):
    """`format:` picks the reader (dbt-duckdb style); such a source is read in place, not ingested."""
    root = make_project(
        {
            "data/users.txt": "id,name\n1,ann\n",
            "data/events.log": '{"id": 1}\n{"id": 2}\n',
            "models/src.yml": """
                sources:
                  - name: files
                    tables:
                      - name: users
                        path: data/users.txt
                        format: csv
                      - name: events
                        path: data/events.log
                        format: json
                """,
            "models/counted.sql": "{{ config(materialized='table') }}select (select count(*) from "
            "{{ source('files', 'users') }}) as u, (select count(*) from "
            "{{ source('files', 'events') }}) as e",
        }
    )
    manifest = load(root).compile()
    assert manifest.nodes["source.proj.files.users"].relation_sql.startswith("read_csv_auto(")
    assert manifest.nodes["source.proj.files.events"].relation_sql.startswith("read_json_auto(")
    results = load(root).run()
    assert statuses(results) == {"counted": "success"}
    assert query(root, "select u, e from counted") == [(1, 2)]
