"""Materialisations: view, table, incremental (append, delete+insert, merge), ephemeral."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import database_path, load, query, statuses, write_files

from wfsql.api import RunOptions

RAW_SOURCE = """
sources:
  - name: raw
    tables:
      - name: events
"""


def relation_types(root: Path) -> dict[str, str]:
    rows = query(
        root,
        "select table_name, 'table' from duckdb_tables() where schema_name = 'main' "
        "union all select view_name, 'view' from duckdb_views() where schema_name = 'main' and not internal",
    )
    return dict(rows)


def execute(root: Path, *statements: str) -> None:
    database_path(root).parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(database_path(root))) as con:
        for statement in statements:
            con.execute(statement)


def test_view_and_table(make_project):
    root = make_project(
        {
            "models/v.sql": "select 1 as id union all select 2",
            "models/t.sql": "{{ config(materialized='table') }}select id * 10 as id from {{ ref('v') }}",
        }
    )
    results = load(root).run()
    assert statuses(results) == {"v": "success", "t": "success"}
    assert relation_types(root) == {"v": "view", "t": "table"}
    assert query(root, "select id from t order by id") == [(10,), (20,)]
    table_result = next(r for r in results.results if r.name == "t")
    assert table_result.rows_affected == 2


def test_switch_view_to_table_and_back(make_project):
    root = make_project({"models/m.sql": "select 1 as id"})
    load(root).run()
    assert relation_types(root) == {"m": "view"}
    write_files(root, {"models/m.sql": "{{ config(materialized='table') }}select 2 as id"})
    assert load(root).run().success
    assert relation_types(root) == {"m": "table"}
    assert query(root, "select id from m") == [(2,)]
    write_files(root, {"models/m.sql": "select 3 as id"})
    assert load(root).run().success
    assert relation_types(root) == {"m": "view"}
    assert query(root, "select id from m") == [(3,)]


def test_failed_switch_keeps_the_old_view(make_project):
    """Dropping the view and creating the table are one transaction: a failing table leaves the view."""
    root = make_project({"models/m.sql": "select 1 as id"})
    load(root).run()
    write_files(root, {"models/m.sql": "{{ config(materialized='table') }}select cast('x' as integer) as id"})
    assert not load(root).run().success
    assert relation_types(root) == {"m": "view"}
    assert query(root, "select id from m") == [(1,)]


def _incremental_project(make_project, config: str, where: str = "") -> Path:
    model = (
        "{{ config(materialized='incremental'" + config + ") }}\nselect * from {{ source('raw', 'events') }}\n" + where
    )
    root = make_project({"models/inc.sql": model, "models/src.yml": RAW_SOURCE})
    execute(
        root,
        "create schema raw",
        "create table raw.events as select * from (values (1, 'a'), (2, 'b')) v(id, val)",
    )
    return root


def test_incremental_append(make_project):
    root = _incremental_project(make_project, "")
    first = load(root).run()
    assert first.results[0].message.startswith("created incremental table")
    execute(root, "delete from raw.events", "insert into raw.events values (3, 'c')")
    second = load(root).run()
    assert second.success
    assert second.results[0].rows_affected == 1
    assert "append into table main.inc" in second.results[0].message
    assert query(root, "select id, val from inc order by id") == [(1, "a"), (2, "b"), (3, "c")]


def test_incremental_delete_insert(make_project):
    root = _incremental_project(make_project, ", unique_key='id'")
    load(root).run()
    execute(root, "delete from raw.events", "insert into raw.events values (2, 'B'), (3, 'c')")
    results = load(root).run()
    assert "delete+insert into table main.inc" in results.results[0].message
    assert query(root, "select id, val from inc order by id") == [(1, "a"), (2, "B"), (3, "c")]


def test_incremental_merge_with_composite_key(make_project):
    root = make_project(
        {
            "models/inc.sql": "{{ config(materialized='incremental', incremental_strategy='merge', "
            "unique_key=['k1', 'k2']) }}\nselect * from {{ source('raw', 'events') }}",
            "models/src.yml": RAW_SOURCE,
        }
    )
    execute(
        root,
        "create schema raw",
        "create table raw.events as select * from (values (1, 1, 'a'), (1, 2, 'b')) v(k1, k2, val)",
    )
    load(root).run()
    execute(root, "delete from raw.events", "insert into raw.events values (1, 2, 'B'), (2, 1, 'c')")
    results = load(root).run()
    assert results.success, results.results[0].message
    assert "merge into table main.inc" in results.results[0].message
    assert query(root, "select k1, k2, val from inc order by all") == [(1, 1, "a"), (1, 2, "B"), (2, 1, "c")]


def test_incremental_full_refresh(make_project):
    root = _incremental_project(make_project, "")
    load(root).run()
    execute(root, "delete from raw.events", "insert into raw.events values (3, 'c')")
    results = load(root).run(RunOptions(full_refresh=True))
    assert results.results[0].message.startswith("created incremental table")
    assert query(root, "select id from inc") == [(3,)]


def test_is_incremental_filter_with_this(make_project):
    root = _incremental_project(
        make_project, "", "{% if is_incremental() %}where id > (select max(id) from {{ this }}){% endif %}"
    )
    load(root).run()
    execute(root, "insert into raw.events values (3, 'c')")  # raw now has 1, 2, 3
    results = load(root).run()
    assert results.results[0].rows_affected == 1
    assert query(root, "select id from inc order by id") == [(1,), (2,), (3,)]
    # a third run with nothing new adds nothing
    assert load(root).run().results[0].rows_affected == 0
    assert query(root, "select count(*) from inc") == [(3,)]


def test_on_schema_change_append_new_columns(make_project):
    root = _incremental_project(make_project, ", on_schema_change='append_new_columns'")
    load(root).run()
    write_files(
        root,
        {
            "models/inc.sql": "{{ config(materialized='incremental', on_schema_change='append_new_columns') }}\n"
            "select id, val, 'new' as extra from {{ source('raw', 'events') }} where id = 2"
        },
    )
    assert load(root).run().success
    assert query(root, "select id, val, extra from inc order by id, extra nulls first") == [
        (1, "a", None),
        (2, "b", None),
        (2, "b", "new"),
    ]


def test_on_schema_change_fail(make_project):
    root = _incremental_project(make_project, ", on_schema_change='fail'")
    load(root).run()
    write_files(
        root,
        {
            "models/inc.sql": "{{ config(materialized='incremental', on_schema_change='fail') }}\n"
            "select id, 'x' as other from {{ source('raw', 'events') }}"
        },
    )
    results = load(root).run()
    assert not results.success
    message = results.results[0].message
    assert "columns of main.inc changed" in message
    assert "other" in message and "val" in message
    assert "--full-refresh" in message
    # the table is untouched
    assert query(root, "select id, val from inc order by id") == [(1, "a"), (2, "b")]


def test_incremental_strategy_needs_unique_key(make_project):
    root = make_project(
        {"models/a.sql": "{{ config(materialized='incremental', incremental_strategy='merge') }}select 1 as id"}
    )
    with pytest.raises(Exception, match="needs a unique_key"):
        load(root).compile()


def test_ephemeral_is_inlined_and_not_created(make_project):
    root = make_project(
        {
            "models/base.sql": "{{ config(materialized='ephemeral') }}select 1 as id union all select 2",
            "models/mid.sql": "{{ config(materialized='ephemeral') }}select id * 10 as id from {{ ref('base') }}",
            "models/final.sql": "{{ config(materialized='table') }}"
            "select m.id, b.id as base_id from {{ ref('mid') }} m join {{ ref('base') }} b "
            "on m.id = b.id * 10",
            "models/with_cte.sql": "-- leading comment\nWITH local AS (select 5 as v)\n"
            "select v, id from local, {{ ref('mid') }}",
        }
    )
    manifest = load(root).compile()
    final_sql = manifest.nodes["model.proj.final"].compiled_sql
    assert '"__wfsql_cte__base" AS (' in final_sql and '"__wfsql_cte__mid" AS (' in final_sql
    assert final_sql.index("__wfsql_cte__base") < final_sql.index('"__wfsql_cte__mid" AS')
    with_cte = manifest.nodes["model.proj.with_cte"].compiled_sql
    assert with_cte.startswith("-- leading comment\nWITH ")
    assert with_cte.lower().count("with ") == 1  # the ephemerals joined the model's own WITH
    results = load(root).run()
    assert results.success
    assert statuses(results) == {"base": "success", "mid": "success", "final": "success", "with_cte": "success"}
    assert query(root, "select id, base_id from final order by id") == [(10, 1), (20, 2)]
    assert query(root, "select v, id from with_cte order by id") == [(5, 10), (5, 20)]
    assert set(relation_types(root)) == {"final", "with_cte"}


def test_ephemeral_with_its_own_with_clause(make_project):
    root = make_project(
        {
            "models/eph.sql": "{{ config(materialized='ephemeral') }}with x as (select 7 as v) select v from x",
            "models/out.sql": "with y as (select 1 as one) select v, one from {{ ref('eph') }}, y",
        }
    )
    assert load(root).run().success
    assert query(root, "select v, one from out") == [(7, 1)]


def test_ephemeral_into_a_with_after_a_config_line(make_project):
    """`{{ config(...) }}` renders to a bare newline; the model's own WITH after it must absorb the ephemerals."""
    root = make_project(
        {
            "models/eph.sql": "{{ config(materialized='ephemeral') }}\nselect 7 as v",
            "models/out.sql": "{{ config(materialized='table') }}\n\n  with y as (select 1 as one)\n"
            "select v, one from {{ ref('eph') }}, y\n",
        }
    )
    sql = load(root).compile().nodes["model.proj.out"].compiled_sql
    assert sql.lower().count("with ") == 1
    assert load(root).run().success
    assert query(root, "select v, one from out") == [(7, 1)]


def test_show_runs_an_ephemeral(make_project):
    root = make_project(
        {
            "models/eph.sql": "{{ config(materialized='ephemeral') }}select 3 as v",
            "models/t.sql": "select * from {{ ref('eph') }}",
        }
    )
    load(root).run()
    assert load(root).show("eph") == (["v"], [(3,)])


def test_hooks_run_in_the_build(make_project):
    root = make_project(
        {
            "models/t.sql": "{{ config(materialized='table', post_hook='delete from {{ this }} where id = 2') }}"
            "select 1 as id union all select 2",
            "models/u.sql": "{{ config(materialized='table', pre_hook='select 1', "
            "post_hook=['delete from {{this}} where id = 1', 'update {{ this}} set id = id * 10']) }}"
            "select 1 as id union all select 2",
        }
    )
    assert load(root).run().success
    assert query(root, "select id from t") == [(1,)]
    assert query(root, "select id from u") == [(20,)]


def test_incremental_models_built_side_by_side_read_their_state_on_their_own_cursor(make_project):
    """Each incremental build asks the state table whether its last build was capped, while other threads run
    SQL: on the shared connection DuckDB refused that ("connection is busy"), failing models at random."""
    heavy = (
        "{{ config(materialized='incremental') }}\n"
        "select i % 97 as k, count(*) as n from range(SIZE) t(i)"
        "{% if is_incremental() %} where i < 0 {% endif %} group by 1"
    )
    files = {f"models/m{j}.sql": heavy.replace("SIZE", str(300_000 + j)) for j in range(12)}
    root = make_project(files, config="threads: 4\n")
    for _ in range(4):  # the first run creates the tables; the others take the incremental path
        results = load(root).run()
        failed = [r.message for r in results.results if r.status != "success"]
        assert not failed, failed
