"""Write an :class:`IngestResult` into DuckDB as three tables, all or nothing."""

from __future__ import annotations

import uuid

import duckdb

from wfsql.conversations.types import IngestResult

TABLE_SUFFIXES: tuple[str, ...] = ("conversations", "turns", "quarantine")


def quote_identifier(name: str) -> str:
    """Double-quote a SQL identifier so any prefix or schema name is taken literally."""
    return '"' + name.replace('"', '""') + '"'


def table_names(prefix: str, schema: str = "main") -> dict[str, str]:
    """Qualified, quoted names of the three tables a load writes, keyed by suffix."""
    return {suffix: f"{quote_identifier(schema)}.{quote_identifier(f'{prefix}_{suffix}')}" for suffix in TABLE_SUFFIXES}


def load_into_duckdb(
    con: duckdb.DuckDBPyConnection,
    result: IngestResult,
    *,
    prefix: str,
    schema: str = "main",
) -> None:
    """Create or replace ``{prefix}_conversations``, ``{prefix}_turns`` and ``{prefix}_quarantine``.

    All three are written in one transaction: readers never see the turns of one load next to the
    conversations of another, and a failure leaves the previous tables untouched. The connection must
    not be inside an open transaction.
    """
    if not prefix:
        raise ValueError("prefix must be a non-empty string")
    targets = table_names(prefix, schema)
    sources = {
        "conversations": result.conversations,
        "turns": result.turns,
        "quarantine": result.quarantine,
    }
    token = uuid.uuid4().hex
    views = {suffix: f"__wfsql_ingest_{token}_{suffix}" for suffix in TABLE_SUFFIXES}
    for suffix, view in views.items():
        con.register(view, sources[suffix])
    try:
        con.begin()
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_identifier(schema)}")
            for suffix in TABLE_SUFFIXES:
                source = quote_identifier(views[suffix])
                con.execute(f"CREATE OR REPLACE TABLE {targets[suffix]} AS SELECT * FROM {source}")
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        for view in views.values():
            con.unregister(view)
