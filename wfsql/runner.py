"""Stage 4: execute a plan on DuckDB, in dependency order, on N threads.

A node starts as soon as all its selected parents succeeded. When a node fails, everything downstream
of it is skipped (and says why); independent branches keep running.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import duckdb

from wfsql.adapter import DuckDBAdapter
from wfsql.compiler import Manifest
from wfsql.console import Console
from wfsql.dag import DAG
from wfsql.errors import DatabaseError, WfsqlError
from wfsql.materialize import BuildOutcome
from wfsql.nodes import Node
from wfsql.plan import Plan, Step
from wfsql.results import NodeResult, RunResults

Executor = Callable[[Node, Step], NodeResult]


@dataclass
class Runner:
    manifest: Manifest
    adapter: DuckDBAdapter
    console: Console
    threads: int
    execute_step: Executor
    # A node whose result is one of these makes its descendants skip (tests with severity error fail).
    blocking_statuses: tuple[str, ...] = ("error", "fail")
    dag: DAG | None = None  # defaults to the manifest's DAG restricted to the plan
    fail_fast: bool = False  # stop starting nodes after the first failure
    _first_failure: list[str] = field(default_factory=list)

    def run(self, plan: Plan, command: str) -> RunResults:
        started = time.perf_counter()
        results = RunResults(command=command)
        dag = self.dag or self.manifest.dag.subgraph(plan.steps)
        total = len(plan.steps)
        pending = {uid: len(dag.parents(uid)) for uid in dag.nodes}
        ready = [uid for uid in dag.topological_order() if pending[uid] == 0]
        blocked_by: dict[str, str] = {}
        finished = 0
        first_failure = self._first_failure = []

        def complete(result: NodeResult) -> None:
            nonlocal finished
            finished += 1
            results.results.append(result)
            self.console.node_result(finished, total, result)
            # A node skipped for an upstream failure blocks its own children too, naming the same culprit:
            # otherwise a grandchild would run (or be reused) on top of a parent that never got built.
            failed = result.status in self.blocking_statuses or result.unique_id in blocked_by
            culprit = blocked_by.get(result.unique_id, result.name)
            if result.status in self.blocking_statuses and not first_failure:
                first_failure.append(result.name)
            for child in dag.children(result.unique_id):
                if failed:
                    blocked_by.setdefault(child, culprit)
                pending[child] -= 1
                if pending[child] == 0:
                    ready.append(child)

        with ThreadPoolExecutor(max_workers=max(1, self.threads), thread_name_prefix="wfsql") as pool:
            running: dict[Future[NodeResult], str] = {}
            while ready or running:
                while ready:
                    uid = ready.pop(0)
                    step = plan.steps[uid]
                    node = self.manifest.nodes[uid]
                    if uid in blocked_by:
                        complete(_skipped(node, f"{node.name} skipped: upstream {blocked_by[uid]} failed"))
                    elif self.fail_fast and first_failure:
                        complete(_skipped(node, f"{node.name} skipped: --fail-fast after {first_failure[0]} failed"))
                    elif step.action in ("reuse", "inline"):
                        complete(_instant(node, step))
                    else:
                        running[pool.submit(self._guarded, node, step)] = uid
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        running.pop(future)
                        complete(future.result())
        results.elapsed = time.perf_counter() - started
        return results

    def _guarded(self, node: Node, step: Step) -> NodeResult:
        """Run one node; any failure becomes an error result, never an exception in the pool."""
        if self.fail_fast and self._first_failure:  # queued before the failure, started after it
            return _skipped(node, f"{node.name} skipped: --fail-fast after {self._first_failure[0]} failed")
        started_at = _now()
        started = time.perf_counter()
        try:
            result = self.execute_step(node, step)
        except WfsqlError as exc:
            result = _error(node, exc.message if not exc.hint else f"{exc.message} (hint: {exc.hint})")
        except duckdb.Error as exc:
            result = _error(node, database_error(node, exc, None).message)
        except Exception as exc:
            result = _error(node, f"{type(exc).__name__}: {exc}")
        if result.status in self.blocking_statuses and not self._first_failure:
            self._first_failure.append(node.name)  # set in the worker, before the next queued node starts
        result.execution_time = time.perf_counter() - started
        result.started_at, result.completed_at = started_at, _now()
        return result


def model_result(node: Node, outcome: BuildOutcome, compiled_path: str | None) -> NodeResult:
    return NodeResult(
        unique_id=node.unique_id,
        name=node.name,
        resource_type=node.resource_type,
        status="success",
        message=outcome.message,
        rows_affected=outcome.rows_affected,
        compiled_path=compiled_path,
    )


def _instant(node: Node, step: Step) -> NodeResult:
    status = "reused" if step.action == "reuse" else "success"
    label = getattr(getattr(node, "relation", None), "label", node.name)
    noun = getattr(node, "materialized", None) or node.resource_type
    message = f"reused {noun} {label} ({step.reason})" if step.action == "reuse" else f"{node.name}: {step.reason}"
    return NodeResult(node.unique_id, node.name, node.resource_type, status, message)


def _skipped(node: Node, message: str) -> NodeResult:
    return NodeResult(node.unique_id, node.name, node.resource_type, "skipped", message)


def _error(node: Node, message: str) -> NodeResult:
    return NodeResult(node.unique_id, node.name, node.resource_type, "error", message)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


_MISSING_TABLE = re.compile(r"Table with name (.+?)!? does not exist", re.IGNORECASE)


def database_error(
    node: Node, exc: duckdb.Error, compiled_path: str | None, parents: Mapping[str, Node] | None = None
) -> DatabaseError:
    """A node's DuckDB failure as wfsql's error: the first lines of DuckDB's message and what to do about it.

    The common case of a missing table is a parent that was never built in this database (a model selected
    alone: `-s child` before its parents exist); then the hint names the parent and the selector that builds
    both, not just the compiled SQL.
    """
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:3])
    hint = f"the compiled SQL is in {compiled_path}" if compiled_path else None
    missing = _MISSING_TABLE.search(text)
    if missing and parents:
        name = missing.group(1).strip("\"'").rsplit(".", 1)[-1].lower()
        for parent_id in node.depends_on:
            parent = parents.get(parent_id)
            relation = getattr(parent, "relation", None)
            if parent is not None and relation is not None and relation.identifier.lower() == name:
                built = f"{parent.resource_type} {parent.name} (which {node.name} reads) is not built in this database"
                hint = f"{built}: build it first, e.g. `wfsql build -s +{node.name}` (it and its parents)"
                if compiled_path:
                    hint += f"; the compiled SQL is in {compiled_path}"
                break
    label = f"{node.resource_type} {node.name}"
    return DatabaseError(f"{label} failed in DuckDB: {text}", node=label, hint=hint)


__all__ = ["DAG", "Runner", "database_error", "model_result"]
