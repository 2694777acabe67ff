"""`--dry-run`: what a selection's LLM calls would cost, counted against the cache, with no model built.

A model's LLM arguments come from its SQL, so its inputs must be readable. Seeds and conversation logs load as
in a run (the count needs their rows). Models do not: on a fresh database they are not built yet, so the SQL of
every unbuilt upstream SQL model that makes no LLM calls is inlined where it is referenced. An unbuilt upstream
model that makes LLM calls of its own (its answers do not exist yet) or is a Python model (its rows exist only
once it runs) cannot be inlined, and the count says so instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp

from wfsql.adapter import DuckDBAdapter
from wfsql.materialize import BuildOutcome, full_build_reason
from wfsql.nodes import ModelNode, Node, relation_inputs


class _CannotInline(Exception):
    """An unbuilt model upstream makes LLM calls itself, or is a Python model."""

    def __init__(self, node: ModelNode, why: str) -> None:
        super().__init__(node.name)
        self.node = node
        self.why = why


def dry_run_model(
    adapter: DuckDBAdapter, node: ModelNode, llm: Any, nodes: Mapping[str, Node] | None = None, *,
    full_refresh: bool = False,
) -> BuildOutcome:
    """The LLM calls (and prompt tokens) a build of `node` would make; `nodes` (unique id → node) lets unbuilt
    upstream models be inlined. Whether the build would be incremental is `build_model`'s own decision."""
    if not node.llm_functions or llm is None:
        return BuildOutcome(f"dry run: {node.name} not built (no LLM calls)")
    incremental = node.incremental_sql and full_build_reason(adapter, node, full_refresh) is None
    sql = node.incremental_sql if incremental else node.compiled_sql
    if nodes is not None:
        try:
            sql = inline_unbuilt_parents(adapter, node, sql, nodes)
        except _CannotInline as blocked:
            return BuildOutcome(
                f"dry run: {node.name} not counted: it reads {blocked.node.name}, which is not built and "
                f"{blocked.why}; build it first (wfsql build -s +{blocked.node.name})"
            )
    from wfsql.llm.runtime import ModelCalls

    calls = ModelCalls(llm, adapter, node.name, node.config.get("llm") or {}, node.llm_functions)
    try:
        stats = calls.prepare(sql)
    finally:
        calls.close()
    return BuildOutcome(
        f"dry run: {node.name} needs {stats.calls} LLM call(s) (~{stats.prompt_tokens:,} prompt tokens), "
        f"{stats.cache_hits} already cached"
    )


def inline_unbuilt_parents(adapter: DuckDBAdapter, node: ModelNode, sql: str, nodes: Mapping[str, Node]) -> str:
    """`sql` with every reference to an unbuilt upstream model replaced by that model's own (inlined) SQL."""
    unbuilt = _unbuilt_ancestors(adapter, node, nodes)
    if not unbuilt:
        return sql
    by_relation = {(m.relation.schema.lower(), m.relation.identifier.lower()): m for m in unbuilt.values()}
    memo: dict[str, exp.Expression] = {}

    def inlined(text: str) -> exp.Expression:
        def swap(table: exp.Expression) -> exp.Expression:
            if not isinstance(table, exp.Table):
                return table
            parent = by_relation.get((table.db.lower(), table.name.lower()))
            if parent is None:
                return table
            if parent.llm_functions:
                raise _CannotInline(parent, "makes LLM calls of its own (counted on its own line when selected)")
            if parent.language == "python":
                raise _CannotInline(parent, "is a Python model, whose rows exist only once it runs")
            if parent.unique_id not in memo:
                memo[parent.unique_id] = inlined(parent.compiled_sql)
            return exp.Subquery(this=memo[parent.unique_id].copy(), alias=exp.TableAlias(
                this=exp.to_identifier(table.alias_or_name)))

        return sqlglot.parse_one(text, read="duckdb").transform(swap)

    return inlined(sql).sql(dialect="duckdb")


def _unbuilt_ancestors(adapter: DuckDBAdapter, node: ModelNode, nodes: Mapping[str, Node]) -> dict[str, ModelNode]:
    """Upstream models with no relation in the database yet (ephemerals are looked through: compile inlined them)."""
    found: dict[str, ModelNode] = {}
    stack: list[Node] = [node]
    while stack:
        for parent in relation_inputs(stack.pop(), nodes):
            if isinstance(parent, ModelNode) and parent.unique_id not in found \
                    and adapter.existing(parent.relation) is None:
                found[parent.unique_id] = parent
                stack.append(parent)
    return found
