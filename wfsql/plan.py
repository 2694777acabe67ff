"""Stage 3: decide what each selected node will do, and why. Pure: takes a snapshot of the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from wfsql.compiler import Manifest
from wfsql.conversation_sources import is_conversation_format
from wfsql.nodes import Ephemeral, Incremental, ModelNode, SeedNode, SourceNode, TrainNode, View

Action = Literal["build", "reuse", "inline", "seed", "test", "ingest", "train"]


@dataclass(frozen=True)
class Step:
    unique_id: str
    action: Action
    reason: str


@dataclass(frozen=True)
class Plan:
    steps: dict[str, Step]

    def count(self, action: Action) -> int:
        return sum(1 for step in self.steps.values() if step.action == action)


def make_plan(
    manifest: Manifest,
    selected: set[str],
    *,
    built: Mapping[str, str],
    existing: Mapping[tuple[str, str], str],
    full_refresh: bool = False,
) -> Plan:
    """`built` maps unique_id → fingerprint last built; `existing` maps (schema, name) → 'table'|'view'."""
    steps: dict[str, Step] = {}
    for uid in manifest.ordered(selected):
        node = manifest.nodes[uid]
        if isinstance(node, SeedNode):
            steps[uid] = Step(uid, "seed", "seeds reload from their CSV file")
        elif isinstance(node, ModelNode):
            steps[uid] = _model_step(node, built, existing, full_refresh)
        elif node.resource_type == "test":
            steps[uid] = Step(uid, "test", "tests run on every invocation")
        elif isinstance(node, TrainNode):  # whether a finished run can be reused depends on the data: decided then
            steps[uid] = Step(uid, "train", "--full-refresh: train anew" if full_refresh else "train, or reuse a run")
        # Only conversation logs are loaded; a file source with a reader format (csv, parquet...) is read in place.
        elif isinstance(node, SourceNode) and node.external_path and is_conversation_format(node.format):
            steps[uid] = _ingest_step(node, built, existing, full_refresh)
    return Plan(steps)


def _model_step(
    node: ModelNode, built: Mapping[str, str], existing: Mapping[tuple[str, str], str], full_refresh: bool
) -> Step:
    uid = node.unique_id
    key = (node.relation.schema.lower(), node.relation.identifier.lower())
    present = existing.get(key)
    if isinstance(node.kind, Ephemeral):
        return Step(uid, "inline", "ephemeral: inlined as a CTE where referenced")
    if present is None:
        return Step(uid, "build", "not in the database yet")
    if isinstance(node.kind, View):
        if full_refresh:
            return Step(uid, "build", "--full-refresh")
        if present == "view" and built.get(uid) == node.fingerprint:
            return Step(uid, "reuse", "unchanged since its last build (same SQL, config and parents)")
        return Step(uid, "build", "changed since its last build" if uid in built else "not built by wfsql yet")
    if isinstance(node.kind, Incremental):
        if full_refresh:
            return Step(uid, "build", "--full-refresh: rebuild from scratch")
        return Step(uid, "build", f"incremental ({node.kind.strategy}): add new rows")
    return Step(uid, "build", "tables rebuild on every run (their inputs may have changed)")


def _ingest_step(
    node: SourceNode, built: Mapping[str, str], existing: Mapping[tuple[str, str], str], full_refresh: bool
) -> Step:
    schema = str(node.config.get("schema", node.source_name)).lower()
    present = (schema, node.name.lower()) in existing
    if present and not full_refresh and built.get(node.unique_id) == node.fingerprint:
        return Step(node.unique_id, "reuse", "log files and declaration unchanged since the last load")
    reason = (
        "--full-refresh"
        if full_refresh and present
        else ("files or declaration changed" if present else "not loaded yet")
    )
    return Step(node.unique_id, "ingest", reason)
