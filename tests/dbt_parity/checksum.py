"""Order-independent content checksums of DuckDB relations.

Pure Python on top of the ``duckdb`` module only (no dbt import), so that the
recorder (``record_dbt_results.py``, run with the dbt-duckdb virtualenv) and
wfsql's own tests (run with the project's ``.venv``) compute exactly the same
figures on their respective databases.

The checksum, written out in :data:`CHECKSUM_SQL`, is::

    md5 over the concatenation, in sorted order, of
        md5(CAST(<row as a named struct> AS VARCHAR))  for every row

* Every row is turned into text by DuckDB's own struct-to-VARCHAR cast, e.g.
  ``{'order_id': 7, 'status': delivered, 'amount': 81.20}``.  The text holds
  the column names, the column order and each value as its DuckDB type prints
  it, so a DECIMAL(38,2) ``81.20`` and a DOUBLE ``81.2`` differ, as do a DATE
  and a TIMESTAMP at midnight.  That is on purpose: parity with dbt means the
  same names, order, types and values.
* Row hashes are sorted before they are joined, so the physical row order does
  not matter; duplicate rows count as often as they occur.
* An empty relation has checksum ``md5('')`` = ``d41d8cd98f00b204e9800998ecf8427e``.

Nothing here relies on ``hash()`` (whose values change between DuckDB
releases).  The same checksum was obtained with DuckDB 2.0.1 and 1.5.6 on the
fixture data (see tests/dbt_parity/README.md).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CHECKSUM_SQL",
    "list_relations",
    "quote_ident",
    "relation_checksum",
    "relation_columns",
    "relation_sql_name",
    "relation_summary",
    "relation_type",
]

#: ``{relation}`` is replaced by an SQL relation name such as
#: ``"shop"."main"."orders"`` (anything that may follow FROM).
CHECKSUM_SQL = """
select
    count(*) as row_count,
    md5(coalesce(string_agg(row_hash, '' order by row_hash), '')) as checksum
from (
    select md5(cast(t as varchar)) as row_hash
    from {relation} as t
) as hashed
"""


def quote_ident(name: str) -> str:
    """Quote one identifier the way DuckDB (and dbt-duckdb) does: "name"."""
    return '"' + name.replace('"', '""') + '"'


def relation_sql_name(database: str | None, schema: str | None, identifier: str) -> str:
    """``"database"."schema"."identifier"``, leaving out missing parts."""
    parts = [p for p in (database, schema) if p] + [identifier]
    return ".".join(quote_ident(p) for p in parts)


def relation_checksum(con: Any, relation_sql_name: str) -> dict:
    """Row count and order-independent content checksum of a relation.

    ``con`` is a ``duckdb.DuckDBPyConnection``; ``relation_sql_name`` is an
    SQL name such as ``'"shop"."main"."orders"'`` or ``'main.orders'``.
    Returns ``{"row_count": int, "checksum": str}``.
    """
    # fetchall(), not fetchone(): DuckDB 2.0 refuses further work on a
    # connection whose last result was only partly fetched.
    ((row_count, checksum),) = con.execute(CHECKSUM_SQL.format(relation=relation_sql_name)).fetchall()
    return {"row_count": int(row_count), "checksum": checksum}


def relation_columns(con: Any, relation_sql_name: str) -> list[list[str]]:
    """``[[column_name, duckdb_type], ...]`` in column order, types as DuckDB
    spells them (``INTEGER``, ``DECIMAL(38,2)``, ``TIMESTAMP``...)."""
    rows = con.execute(f"describe select * from {relation_sql_name}").fetchall()
    return [[r[0], r[1]] for r in rows]


def relation_type(con: Any, database: str, schema: str, identifier: str) -> str | None:
    """``'table'``, ``'view'`` or None when no such relation exists."""
    if con.execute(
        "select 1 from duckdb_tables() where database_name = ? and schema_name = ? and table_name = ?",
        [database, schema, identifier],
    ).fetchall():
        return "table"
    if con.execute(
        "select 1 from duckdb_views() where database_name = ? and schema_name = ? and view_name = ?",
        [database, schema, identifier],
    ).fetchall():
        return "view"
    return None


def list_relations(con: Any, database: str) -> list[tuple[str, str, str, str]]:
    """All user tables and views of one attached database, as sorted
    ``(database, schema, identifier, 'table'|'view')`` tuples."""
    rows = con.execute(
        """
        select database_name, schema_name, table_name, 'table'
        from duckdb_tables()
        where database_name = ? and not internal and not temporary
        union all
        select database_name, schema_name, view_name, 'view'
        from duckdb_views()
        where database_name = ? and not internal and not temporary
        order by 1, 2, 3
        """,
        [database, database],
    ).fetchall()
    return [tuple(r) for r in rows]


def relation_summary(con: Any, database: str, schema: str, identifier: str) -> dict:
    """Everything the parity fixtures record about one relation, in the shape
    used by ``expected_dbt_results.json`` (``relations`` entries, minus
    ``dbt_unique_id``)."""
    name = relation_sql_name(database, schema, identifier)
    summary = {
        "relation": f"{database}.{schema}.{identifier}",
        "database": database,
        "schema": schema,
        "identifier": identifier,
        "type": relation_type(con, database, schema, identifier),
        "columns": relation_columns(con, name),
    }
    summary.update(relation_checksum(con, name))
    return summary
