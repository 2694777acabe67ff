"""What wfsql last built into a database: one row per node with its fingerprint.

Rows are written in the same transaction as the relation they describe, so the state can never claim
a build that did not commit. Plans read it to reuse unchanged views and to select `state:modified`.
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
        "materialized varchar, built_at timestamp default current_timestamp)"
    )


def read_state(adapter: DuckDBAdapter) -> dict[str, str]:
    """unique_id → fingerprint of the last successful build; empty for a new database."""
    if (STATE_SCHEMA, "node_state") not in adapter.catalog():
        return {}
    rows = adapter.connection.execute(f"select unique_id, fingerprint from {STATE_TABLE}").fetchall()
    return dict(rows)


def record_build(cursor: duckdb.DuckDBPyConnection, node: Node, relation: str, materialized: str) -> None:
    cursor.execute(
        f"insert or replace into {STATE_TABLE} (unique_id, fingerprint, relation, materialized, built_at) "
        "values (?, ?, ?, ?, current_timestamp)",
        [node.unique_id, node.fingerprint, relation, materialized],
    )
