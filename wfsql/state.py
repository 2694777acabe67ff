"""What wfsql last built into a database: one row per node with its fingerprint.

Rows are written in the same transaction as the relation they describe, so the state can never claim
a build that did not commit. Plans read it to reuse unchanged views and to select `state:modified`.
A build whose LLM calls `--llm-limit` cut short is marked: its rows hold NULLs where answers are missing, so
it counts as modified, and an incremental model rebuilds in full next time (from the cache) instead of
appending to rows that would never be filled in.
"""

from __future__ import annotations

import duckdb

from wfsql.adapter import STATE_SCHEMA, DuckDBAdapter
from wfsql.nodes import Node

STATE_TABLE = f'"{STATE_SCHEMA}"."node_state"'


def ensure_state_table(adapter: DuckDBAdapter) -> None:
    adapter.ensure_schemas([STATE_SCHEMA])
    adapter.connection.execute(
        f"create table if not exists {STATE_TABLE} ("
        "unique_id varchar primary key, fingerprint varchar not null, relation varchar, "
        "materialized varchar, built_at timestamp default current_timestamp, llm_capped boolean default false)"
    )
    # databases written before the column existed
    adapter.connection.execute(f"alter table {STATE_TABLE} add column if not exists llm_capped boolean default false")


CAPPED_MARK = "+llm-capped"
"""Appended to the fingerprint `read_state` reports for a capped build, so no comparison finds it unchanged."""


def read_state(adapter: DuckDBAdapter) -> dict[str, str]:
    """unique_id → fingerprint of the last successful build; empty for a new database."""
    if (STATE_SCHEMA, "node_state") not in adapter.catalog():
        return {}
    columns = {row[0] for row in adapter.connection.execute(f"describe {STATE_TABLE}").fetchall()}
    capped = f"case when llm_capped then fingerprint || '{CAPPED_MARK}' else fingerprint end" \
        if "llm_capped" in columns else "fingerprint"
    rows = adapter.connection.execute(f"select unique_id, {capped} from {STATE_TABLE}").fetchall()
    return dict(rows)


def last_build_capped(adapter: DuckDBAdapter, node: Node) -> bool:
    """Whether the node's last recorded build had LLM calls cut by `--llm-limit`.

    Asked during a build, after `ensure_state_table` (so the table and its column exist). It runs while models
    build on worker threads, so it reads through this thread's cursor, never the shared connection (DuckDB
    answers a second thread on a busy connection with "connection is busy").
    """
    row = adapter.cursor().execute(
        f"select llm_capped from {STATE_TABLE} where unique_id = ?", [node.unique_id]
    ).fetchone()
    return bool(row and row[0])


def record_build(
    cursor: duckdb.DuckDBPyConnection, node: Node, relation: str, materialized: str, *, llm_capped: bool = False
) -> None:
    cursor.execute(
        f"insert or replace into {STATE_TABLE} (unique_id, fingerprint, relation, materialized, built_at, llm_capped) "
        "values (?, ?, ?, ?, current_timestamp, ?)",
        [node.unique_id, node.fingerprint, relation, materialized, llm_capped],
    )
