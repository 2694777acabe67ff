"""How each kind of node becomes a relation, atomically.

Every build is one transaction: `CREATE OR REPLACE` (or the incremental statements) plus the state
row. DuckDB's DDL is transactional, so a failing query leaves the previous relation exactly as it was
and nothing half-written is ever visible to readers.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from wfsql.adapter import DuckDBAdapter
from wfsql.adapter import first_row as _first_row
from wfsql.errors import DatabaseError
from wfsql.nodes import Ephemeral, Incremental, ModelNode, Relation, SeedNode, Table, View, quote_identifier
from wfsql.state import last_build_capped, record_build

_temp_names = itertools.count()


@dataclass(frozen=True)
class BuildOutcome:
    message: str
    rows_affected: int | None = None


def build_model(
    adapter: DuckDBAdapter,
    node: ModelNode,
    *,
    full_refresh: bool = False,
    llm: Any = None,
    variables: dict[str, Any] | None = None,
) -> BuildOutcome:
    """Build one model; `llm` (an LLMRuntime) answers its LLM calls first, as set operations."""
    match node.kind:
        case View():
            return _replace(adapter, node, "view", node.compiled_sql)
        case Table() if node.language == "python":
            return _python_table(adapter, node, variables or {})
        case Table():
            with _llm_calls(adapter, node, node.compiled_sql, llm) as calls:
                outcome = _replace(adapter, node, "table", node.compiled_sql, llm_capped=calls.capped)
                return _with_note(outcome, calls.note)
        case Incremental() as kind:
            reason = full_build_reason(adapter, node, full_refresh)
            if reason is not None:
                with _llm_calls(adapter, node, node.compiled_sql, llm) as calls:
                    outcome = _replace(adapter, node, "table", node.compiled_sql, llm_capped=calls.capped)
                    message = "created incremental " + outcome.message.split(" ", 1)[1]
                    if reason == CAPPED_BEFORE:
                        message += f", in full: {CAPPED_BEFORE}"
                    return _with_note(BuildOutcome(message, outcome.rows_affected), calls.note)
            with _llm_calls(adapter, node, node.incremental_sql or node.compiled_sql, llm) as calls:
                return _with_note(_incremental(adapter, node, kind, llm_capped=calls.capped), calls.note)
        case Ephemeral():
            return BuildOutcome("ephemeral (inlined where referenced)")


CAPPED_BEFORE = "its last build was capped by --llm-limit"


def full_build_reason(adapter: DuckDBAdapter, node: ModelNode, full_refresh: bool = False) -> str | None:
    """Why an incremental model is rebuilt from its full SQL instead of appended to; None when it is appended to.

    One decision for the build and for `--dry-run`, so the calls a dry run counts are the calls a build makes.
    """
    existing = adapter.existing(node.relation)
    if existing is None:
        return "not built yet"
    if existing.type != "table":
        return f"it is a {existing.type}"
    if full_refresh or node.config.get("full_refresh"):
        return "full refresh"
    if last_build_capped(adapter, node):  # it left NULLs an append would never revisit; the cache keeps it cheap
        return CAPPED_BEFORE
    return None


@dataclass(frozen=True)
class _CallsDone:
    note: str | None = None  # the LLM statistics, for the build's message
    capped: bool = False  # `--llm-limit` left some calls unanswered


@contextmanager
def _llm_calls(adapter: DuckDBAdapter, node: ModelNode, sql: str, llm: Any) -> Iterator[_CallsDone]:
    """Answer the model's LLM calls before its SQL runs; the UDFs stay until the build is done."""
    if not node.llm_functions:
        yield _CallsDone()
        return
    if llm is None:
        raise DatabaseError(f"model {node.name} calls LLM functions but no LLM runtime is configured")
    from wfsql.llm.runtime import ModelCalls

    calls = ModelCalls(llm, adapter, node.name, node.config.get("llm") or {}, node.llm_functions)
    try:
        stats = calls.prepare(sql)
        yield _CallsDone(stats.describe(), stats.skipped_by_limit > 0)
    finally:
        calls.close()


def _with_note(outcome: BuildOutcome, note: str | None) -> BuildOutcome:
    return outcome if note is None else BuildOutcome(f"{outcome.message} ({note})", outcome.rows_affected)


def _python_table(adapter: DuckDBAdapter, node: ModelNode, variables: dict[str, Any]) -> BuildOutcome:
    """Run a Python model on this thread's cursor, then write its result like a table model."""
    from wfsql.python_models import run_python_model

    cursor = adapter.cursor()
    table = run_python_model(cursor, node.raw_sql, node.path, node.name, dict(node.python_links), variables)
    view = f"__wfsql_python_{node.name}"
    cursor.register(view, table)
    try:
        return _replace(adapter, node, "table", f"select * from {quote_identifier(view)}")
    finally:
        cursor.unregister(view)


def _replace(
    adapter: DuckDBAdapter, node: ModelNode | SeedNode, relation_type: str, sql: str, *, llm_capped: bool = False
) -> BuildOutcome:
    relation = node.relation
    existing = adapter.existing(relation)
    rows: int | None = None
    with adapter.transaction() as cursor:
        _hooks(cursor, node, "pre_hooks")
        if existing is not None and existing.type != relation_type:
            cursor.execute(f"drop {existing.type} {relation}")
        result = cursor.execute(f"create or replace {relation_type} {relation} as\n{sql}")
        if relation_type == "table":
            fetched = _first_row(result)
            rows = int(fetched[0]) if fetched else None
        _hooks(cursor, node, "post_hooks")
        materialized = relation_type if isinstance(node, ModelNode) else "seed"
        record_build(cursor, node, relation.label, materialized, llm_capped=llm_capped)
    adapter.remember(relation, relation_type)
    noun = "view" if relation_type == "view" else "table"
    return BuildOutcome(f"created {noun} {relation.label}", rows)


# Hooks are not rendered by Jinja here; `{{ this }}` is the one variable they take, spelled with any spacing.
_THIS = re.compile(r"\{\{-?\s*this\s*-?\}\}")


def _hooks(cursor: duckdb.DuckDBPyConnection, node: ModelNode | SeedNode, which: str) -> None:
    for hook in getattr(node, which, ()):
        cursor.execute(_THIS.sub(lambda _: str(node.relation), hook))


def _incremental(
    adapter: DuckDBAdapter, node: ModelNode, kind: Incremental, *, llm_capped: bool = False
) -> BuildOutcome:
    relation = node.relation
    sql = node.incremental_sql or node.compiled_sql
    temp = quote_identifier(f"__wfsql_incr_{node.name}_{next(_temp_names)}")
    with adapter.transaction() as cursor:
        _hooks(cursor, node, "pre_hooks")
        cursor.execute(f"create temp table {temp} as\n{sql}")
        new_rows = int(_first_row(cursor.execute(f"select count(*) from {temp}"))[0])  # type: ignore[index]
        columns = _reconcile_columns(cursor, adapter, node, kind, temp)
        column_list = ", ".join(quote_identifier(c) for c in columns)
        if kind.strategy == "delete+insert":
            match = " and ".join(f"t.{quote_identifier(k)} = n.{quote_identifier(k)}" for k in kind.unique_key)
            cursor.execute(f"delete from {relation} as t where exists (select 1 from {temp} as n where {match})")
            cursor.execute(f"insert into {relation} ({column_list}) select {column_list} from {temp}")
        elif kind.strategy == "merge":
            match = " and ".join(f"t.{quote_identifier(k)} = n.{quote_identifier(k)}" for k in kind.unique_key)
            updates = ", ".join(f"{quote_identifier(c)} = n.{quote_identifier(c)}" for c in columns)
            values = ", ".join(f"n.{quote_identifier(c)}" for c in columns)
            cursor.execute(
                f"merge into {relation} as t using {temp} as n on {match} "
                f"when matched then update set {updates} "
                f"when not matched then insert ({column_list}) values ({values})"
            )
        else:
            cursor.execute(f"insert into {relation} ({column_list}) select {column_list} from {temp}")
        cursor.execute(f"drop table {temp}")
        _hooks(cursor, node, "post_hooks")
        record_build(cursor, node, relation.label, "incremental", llm_capped=llm_capped)
    return BuildOutcome(f"{kind.strategy} into table {relation.label}", new_rows)


def _reconcile_columns(
    cursor: duckdb.DuckDBPyConnection, adapter: DuckDBAdapter, node: ModelNode, kind: Incremental, temp: str
) -> list[str]:
    """Columns to write, after applying on_schema_change to new/removed columns."""
    incoming = [(row[0], row[1]) for row in cursor.execute(f"describe {temp}").fetchall()]
    existing = [(row[0], row[1]) for row in cursor.execute(f"describe {node.relation}").fetchall()]
    existing_names = {name.lower() for name, _ in existing}
    incoming_names = {name.lower() for name, _ in incoming}
    added = [(n, t) for n, t in incoming if n.lower() not in existing_names]
    removed = [n for n, _ in existing if n.lower() not in incoming_names]
    if (added or removed) and kind.on_schema_change == "fail":
        raise DatabaseError(
            f"the columns of {node.relation.label} changed (new: {[n for n, _ in added]}, "
            f"gone: {removed}) and on_schema_change is 'fail'",
            node=f"model {node.name}",
            hint="run with --full-refresh to rebuild it, or set on_schema_change: append_new_columns",
        )
    if kind.on_schema_change in ("append_new_columns", "sync_all_columns"):
        for name, dtype in added:
            cursor.execute(f"alter table {node.relation} add column {quote_identifier(name)} {dtype}")
        existing_names |= {n.lower() for n, _ in added}
    if kind.on_schema_change == "sync_all_columns":
        for name in removed:
            cursor.execute(f"alter table {node.relation} drop column {quote_identifier(name)}")
    return [name for name, _ in incoming if name.lower() in existing_names]


# ------------------------------------------------------------------------------------------ seeds

# dbt-duckdb infers seed types with agate: whole numbers become INTEGER and other numbers DOUBLE.
_DBT_SEED_TYPES = {
    "BIGINT": "INTEGER",
    "HUGEINT": "INTEGER",
    "SMALLINT": "INTEGER",
    "TINYINT": "INTEGER",
    "FLOAT": "DOUBLE",
    "REAL": "DOUBLE",
}


def load_seed(adapter: DuckDBAdapter, node: SeedNode, *, dbt_types: bool = False) -> BuildOutcome:
    path = node.file_path.replace("'", "''")
    options = [f"'{path}'", "header = true", "auto_detect = true", f"delim = '{node.delimiter}'"]
    if node.column_types:
        types = ", ".join(f"'{c}': '{t}'" for c, t in node.column_types.items())
        options.append(f"types = {{{types}}}")
    reader = f"read_csv({', '.join(options)})"
    select = f"select * from {reader}"
    if dbt_types:
        select = _dbt_typed_select(adapter, reader, node)
    try:
        outcome = _replace(adapter, node, "table", select)
    except duckdb.Error as exc:
        raise DatabaseError(
            f"could not load seed {node.path}: {str(exc).splitlines()[0]}",
            node=f"seed {node.name}",
            hint="check the CSV's header and delimiter, or set column_types for the offending column",
        ) from None
    return BuildOutcome(f"loaded seed {node.relation.label}", outcome.rows_affected)


def _dbt_typed_select(adapter: DuckDBAdapter, reader: str, node: SeedNode) -> str:
    described = adapter.cursor().execute(f"describe select * from {reader}").fetchall()
    casts = []
    for name, dtype, *_ in described:
        target = node.column_types.get(name) or _DBT_SEED_TYPES.get(str(dtype).upper())
        if str(dtype).upper().startswith("DECIMAL") and not node.column_types.get(name):
            target = "DOUBLE"
        column = quote_identifier(name)
        casts.append(f"cast({column} as {target}) as {column}" if target else column)
    return f"select {', '.join(casts)} from {reader}"


def drop_relation(adapter: DuckDBAdapter, relation: Relation) -> None:
    existing = adapter.existing(relation)
    if existing:
        adapter.execute(f"drop {existing.type} if exists {relation}")
        adapter.remember(relation, None)
