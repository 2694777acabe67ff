"""The Python API behind every CLI command: load → compile → plan → run, one method per command."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wfsql.artifacts import CompiledWriter, compiled_path, compiled_relpath, write_artifacts_if_changed
from wfsql.compiler import Manifest, compile_project
from wfsql.config import ProjectConfig, load_project
from wfsql.console import Console
from wfsql.errors import DatabaseError, WfsqlError
from wfsql.nodes import Ephemeral, ModelNode, Node, SeedNode, SourceNode, TrainNode, relation_inputs
from wfsql.results import NodeResult, RunResults
from wfsql.selection import SelectionContext, select_nodes

if TYPE_CHECKING:  # the database side is imported when a command needs it: `compile` never does
    from wfsql.adapter import DuckDBAdapter
    from wfsql.plan import Plan, Step


@dataclass
class RunOptions:
    select: Sequence[str] = ()
    exclude: Sequence[str] = ()
    full_refresh: bool = False
    fail_fast: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _is_loader(node: Node) -> bool:
    """A conversation source: files wfsql ingests into tables before the models that read them."""
    from wfsql.conversation_sources import is_conversation_format

    return isinstance(node, SourceNode) and bool(node.external_path) and is_conversation_format(node.format)


def _gated_dag(manifest: Manifest, plan: Plan):
    """For `build`: a node also waits for the tests of its parents, unless that test needs the node itself."""
    from wfsql.dag import DAG

    tests_of: dict[str, list[str]] = {}
    for uid in plan.steps:
        node = manifest.nodes[uid]
        if node.resource_type == "test":
            for parent in node.depends_on:
                tests_of.setdefault(parent, []).append(uid)
    dag = manifest.dag.subgraph(plan.steps)
    parents: dict[str, list[str]] = {}
    for uid in dag.topological_order():
        extra = []
        if manifest.nodes[uid].resource_type != "test":
            ancestors = dag.ancestors(uid)
            for parent in dag.parents(uid):
                for test_id in tests_of.get(parent, ()):
                    if set(manifest.nodes[test_id].depends_on) <= ancestors:
                        extra.append(test_id)
        parents[uid] = [*dag.parents(uid), *extra]
    return DAG(parents)


class Project:
    """A loaded project. Cheap to create; compiles on first use and caches the manifest."""

    def __init__(
        self, config: ProjectConfig, console: Console | None = None, *, cli_vars: Iterable[str] = ()
    ) -> None:
        self.config = config
        self.console = console or Console()
        self._manifest: Manifest | None = None
        self._cli_vars = tuple(cli_vars)  # --vars keys, checked against the var() calls of the project

    @classmethod
    def load(
        cls,
        project_dir: str | Path = ".",
        *,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
        threads: int | None = None,
        console: Console | None = None,
    ) -> Project:
        config = load_project(project_dir, target=target, cli_vars=vars, threads=threads)
        return cls(config, console, cli_vars=vars or ())

    # -------------------------------------------------------------------------------- compile

    def compile(self, *, write_artifacts: bool = True) -> Manifest:
        if self._manifest is None:
            writer = CompiledWriter(self.config) if write_artifacts else None
            manifest = compile_project(self.config, while_parsing=writer.write_models if writer else None)
            for warning in [*manifest.warnings, *self._unused_var_warnings()]:
                self.console.warn(warning)
            if writer is not None:
                write_artifacts_if_changed(manifest, writer)
            self._manifest = manifest
        return self._manifest

    def _unused_var_warnings(self) -> list[str]:
        if not self._cli_vars:
            return []
        from wfsql.resources import bundled_macros_dir
        from wfsql.unused_vars import read_var_names, unused_var_warnings

        config = self.config
        configured = (config.root / path for path in (*config.model_paths, *config.test_paths, *config.macro_paths))
        outside = [path for path in configured if not path.resolve().is_relative_to(config.root.resolve())]
        folders = [config.root, bundled_macros_dir(), *outside]  # folders configured outside the project too
        return unused_var_warnings(self._cli_vars, read_var_names(folders, skip=[config.target_dir]))

    def select(
        self,
        select: Sequence[str] = (),
        exclude: Sequence[str] = (),
        *,
        resource_types: Sequence[str] | None = None,
        state: dict[str, str] | None = None,
    ) -> set[str]:
        manifest = self.compile()
        context = SelectionContext(
            manifest.nodes,
            manifest.dag,
            self.config.name,
            self.config.model_paths,
            state=state if state is not None else self._state_if_needed(select, exclude),
        )
        return select_nodes(context, select, exclude, resource_types=resource_types)

    def _state_if_needed(self, select: Sequence[str], exclude: Sequence[str]) -> dict[str, str] | None:
        if not any("state:" in spec for spec in (*select, *exclude)):
            return None
        if self.config.database != ":memory:" and not Path(self.config.database).exists():
            return {}
        from wfsql.state import read_state

        with self.database(read_only=True) as adapter:
            return read_state(adapter)

    def ls(
        self, select: Sequence[str] = (), exclude: Sequence[str] = (), resource_type: str | None = None
    ) -> list[Node]:
        manifest = self.compile()
        chosen = self.select(select, exclude, resource_types=[resource_type] if resource_type else None)
        return [manifest.nodes[uid] for uid in manifest.ordered(chosen)]

    # ------------------------------------------------------------------------------- database

    @contextmanager
    def database(self, *, read_only: bool = False) -> Iterator[DuckDBAdapter]:
        """Open the target database; writers take the run lock first so two runs never collide."""
        from wfsql.adapter import DuckDBAdapter, RunLock

        if read_only:
            adapter = DuckDBAdapter(self.config.database, read_only=True, search_path=self.config.root)
            try:
                yield adapter
            finally:
                adapter.close()
            return
        with RunLock(self.config.database):
            adapter = DuckDBAdapter(self.config.database, search_path=self.config.root)
            try:
                yield adapter
            finally:
                adapter.close()

    # ------------------------------------------------------------------------------- commands

    def run(self, options: RunOptions | None = None) -> RunResults:
        """Build the selected models (not seeds or tests)."""
        return self._execute("run", options or RunOptions(), ("model",))

    def seed(self, options: RunOptions | None = None) -> RunResults:
        return self._execute("seed", options or RunOptions(), ("seed",))

    def test(self, options: RunOptions | None = None) -> RunResults:
        """Run the tests of the selected nodes (and tests selected by name)."""
        if self.config.database != ":memory:" and not Path(self.config.database).exists():
            # Tests read built models; without a database each one would fail on its own, and an empty
            # database would be created along the way.
            raise WfsqlError(
                f"nothing to test yet: the database {self.config.database_label} does not exist",
                hint="run `wfsql build` (models, then their tests) first",
            )
        return self._execute("test", options or RunOptions(), ("test",))

    def build(self, options: RunOptions | None = None) -> RunResults:
        """Seeds, models and tests in DAG order; a failed error-severity test stops its downstream."""
        return self._execute("build", options or RunOptions(), ("seed", "model", "test", "train"))

    def train(self, names: Sequence[str] = (), options: RunOptions | None = None) -> RunResults:
        """`wfsql train [NAME...]`: build `+NAME` for each training target (all of them when none is named)."""
        from wfsql.training.api import train_selection

        options = options or RunOptions()
        options.select = train_selection(self.compile(), names)
        return self._execute("train", options, ("seed", "model", "test", "train"))

    def _selected_for(self, options: RunOptions, resource_types: Sequence[str], built: dict[str, str]) -> set[str]:
        manifest = self.compile()
        chosen = self.select(options.select, options.exclude, state=built)
        if not options.select and any(isinstance(n, TrainNode) for n in manifest.nodes.values()):
            from wfsql.training.api import hold_out_training  # training only runs when selected (docs/training.md)

            chosen = hold_out_training(manifest, chosen, self.console)
        if "model" in resource_types:  # conversation logs a selected model reads are loaded first
            for uid in list(chosen):
                for ancestor in manifest.dag.ancestors(uid):
                    if _is_loader(manifest.nodes[ancestor]):
                        chosen.add(ancestor)
        if "test" in resource_types and options.select:
            excluded = self.select(options.exclude, (), state=built) if options.exclude else set()
            for uid, node in manifest.nodes.items():
                if node.resource_type == "test" and set(node.depends_on) & chosen and uid not in excluded:
                    chosen.add(uid)
        return {
            uid
            for uid in chosen
            if manifest.nodes[uid].resource_type in resource_types
            or ("model" in resource_types and _is_loader(manifest.nodes[uid]))
        }

    def _execute(self, command: str, options: RunOptions, resource_types: Sequence[str]) -> RunResults:
        from wfsql.plan import make_plan
        from wfsql.state import ensure_state_table, read_state

        manifest = self.compile()
        with self.database() as adapter:
            ensure_state_table(adapter)
            built = read_state(adapter)
            selected = self._selected_for(options, resource_types, built)
            relations = [
                manifest.nodes[uid].relation.schema  # type: ignore[attr-defined]
                for uid in selected
                if isinstance(manifest.nodes[uid], ModelNode | SeedNode)
                and not isinstance(getattr(manifest.nodes[uid], "kind", None), Ephemeral)
            ]
            adapter.ensure_schemas(sorted(set(relations)))
            existing = {key: rel.type for key, rel in adapter.catalog().items()}
            plan = make_plan(manifest, selected, built=built, existing=existing, full_refresh=options.full_refresh)
            results = self._run_plan(command, manifest, adapter, plan, options)
        results.args = {
            "select": list(options.select),
            "exclude": list(options.exclude),
            "full_refresh": options.full_refresh,
            "threads": self.config.threads,
            "target": self.config.target_name,
        }
        results.write(self.config.target_dir)
        self.console.summary(results)
        return results

    def _run_plan(
        self, command: str, manifest: Manifest, adapter: DuckDBAdapter, plan: Plan, options: RunOptions
    ) -> RunResults:
        if not plan.steps:
            self.console.info("Nothing selected.")
            return RunResults(command=command)
        actions = ("ingest", "build", "reuse", "seed", "test", "train")
        counts = ", ".join(f"{plan.count(a)} to {a}" for a in actions if plan.count(a))
        self.console.info(
            f"Running {len(plan.steps)} node(s) on {self.config.database_label} "
            f"with {self.config.threads} thread(s): {counts or 'nothing to execute'}"
        )
        from wfsql.runner import Runner

        executor = self._executor(manifest, adapter, options, plan)
        dag = _gated_dag(manifest, plan) if command in ("build", "train") else None
        runner = Runner(
            manifest, adapter, self.console, self.config.threads, executor, dag=dag, fail_fast=options.fail_fast
        )
        return runner.run(plan, command)

    def _executor(self, manifest: Manifest, adapter: DuckDBAdapter, options: RunOptions, plan: Plan):
        import duckdb

        from wfsql.dry_run import dry_run_model
        from wfsql.materialize import BuildOutcome, build_model, load_seed
        from wfsql.runner import database_error, model_result
        from wfsql.testing import TestExecutor, TestNode

        dbt_types = self.config.flavor == "dbt"
        uses_llm = any(getattr(manifest.nodes[uid], "llm_functions", ()) for uid in plan.steps)
        llm = self._llm_runtime(options) if uses_llm else None
        if uses_llm:
            from wfsql.llm.cache import ensure_cache_table

            ensure_cache_table(adapter)  # once, here, rather than racing in worker threads
        planned_tests = [n for uid in plan.steps if isinstance(n := manifest.nodes[uid], TestNode)]
        tests = TestExecutor(
            adapter,
            planned_tests,
            target_schema=self.config.schema,
            compiled_paths={t.unique_id: compiled_relpath(manifest, t) for t in planned_tests},
            relations={
                uid: node.relation  # type: ignore[attr-defined]
                for uid, node in manifest.nodes.items()
                if isinstance(node, ModelNode | SeedNode)
            },
            batch=not options.extra.get("no_batch_tests", False),
        )

        def execute(node: Node, step: Step) -> NodeResult:
            path = compiled_path(manifest, node)
            shown = str(path.relative_to(self.config.root)) if isinstance(node, ModelNode | TestNode) else None
            if isinstance(node, TrainNode):
                from wfsql.training.execute import execute_training

                return execute_training(adapter, node, self.config, self.console, options)
            if _is_loader(node):
                from wfsql.conversation_sources import load_conversation_source

                loaded = load_conversation_source(
                    adapter,
                    node,
                    schema=str(node.config.get("schema", node.source_name)),  # type: ignore[attr-defined]
                    strict=bool(options.extra.get("strict")),
                )
                return model_result(node, BuildOutcome(loaded.message, loaded.rows_affected), None)
            if isinstance(node, TestNode):
                try:
                    return tests.run(node)
                except duckdb.Error as exc:
                    first = " ".join(str(exc).strip().splitlines()[:2])
                    raise DatabaseError(
                        f"test {node.name} failed in DuckDB: {first}; declared at {node.declared_at}",
                        node=f"test {node.name}",
                        hint=f"the compiled test SQL is in {shown}",
                    ) from None
            try:
                if isinstance(node, SeedNode):
                    return model_result(node, load_seed(adapter, node, dbt_types=dbt_types), None)
                if isinstance(node, ModelNode) and options.extra.get("dry_run"):
                    outcome = dry_run_model(adapter, node, llm, manifest.nodes, full_refresh=options.full_refresh)
                    return model_result(node, outcome, shown)
                if isinstance(node, ModelNode):
                    outcome = build_model(
                        adapter, node, full_refresh=options.full_refresh, llm=llm, variables=self.config.vars
                    )
                    return model_result(node, outcome, shown)
            except duckdb.Error as exc:
                raise database_error(node, exc, shown, manifest.nodes) from None
            raise WfsqlError(f"cannot execute {node.resource_type} {node.name}")

        return execute

    def _llm_runtime(self, options: RunOptions) -> Any:
        """One LLM runtime per command (models load on their first call, once)."""
        from wfsql.llm.runtime import LLMRuntime, LLMSettings

        return LLMRuntime(
            LLMSettings.parse(self.config.llm, self.config.root),
            console=self.console,
            limit=options.extra.get("llm_limit"),
            dry_run=bool(options.extra.get("dry_run")),
            executor=options.extra.get("executor"),
            retry_failed=bool(options.extra.get("llm_retry_failed")),
        )

    def show(self, name: str, limit: int = 10) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Rows of a model, seed or source (`name` or `source.table`): from its relation when built, else by
        running its compiled SQL."""
        manifest = self.compile()
        node = manifest.by_name(name, ("model", "seed"))
        if node is None:
            source = next(
                (
                    n
                    for n in manifest.nodes.values()
                    if isinstance(n, SourceNode) and name in (n.name, f"{n.source_name}.{n.name}")
                ),
                None,
            )
            if source is not None:
                with self.database(read_only=True) as adapter:
                    return adapter.query(f"select * from {source.relation_sql}", limit=limit)
            from wfsql.errors import did_you_mean

            names = [n.name for n in manifest.nodes.values() if n.resource_type in ("model", "seed", "source")]
            suggestion = did_you_mean(name, names)
            raise WfsqlError(f"no model, seed or source named {name!r}" + (f"; {suggestion}" if suggestion else ""))
        database_exists = self.config.database == ":memory:" or Path(self.config.database).exists()
        if not database_exists:
            raise WfsqlError(
                f"the database {self.config.database_label} does not exist yet",
                hint="run `wfsql build` (or `wfsql run`) first",
            )
        with self.database(read_only=True) as adapter:
            unbuilt = isinstance(node, ModelNode) and adapter.existing(node.relation) is None
            if isinstance(node, ModelNode) and (isinstance(node.kind, Ephemeral) or unbuilt):
                missing = _unbuilt_inputs(manifest, node, adapter)
                if missing:
                    raise WfsqlError(
                        f"{name} is not built yet, and it reads {_names(missing)}, not built either",
                        node=name,
                        hint=f"build them first: `wfsql build -s +{name}` (models and seeds)",
                    )
                sql = node.compiled_sql
            else:
                sql = f"select * from {node.relation}"  # type: ignore[attr-defined]
            import duckdb

            try:
                return adapter.query(sql, limit=limit)
            except duckdb.Error as exc:
                raise DatabaseError(
                    str(exc).splitlines()[0], node=name, hint="build it first with `wfsql run`"
                ) from None

    def export(self, name: str, fmt: str, output: Path | None = None) -> tuple[Path, int]:
        """Write a built pairs model as TRL JSONL, wildfeedback.json or Parquet."""
        from wfsql.export import export_rows

        manifest = self.compile()
        node = manifest.by_name(name, ("model",))
        if node is None:
            from wfsql.errors import did_you_mean

            suggestion = did_you_mean(name, [n.name for n in manifest.models()])
            raise WfsqlError(f"no model named {name!r}" + (f"; {suggestion}" if suggestion else ""))
        suffix = {"trl": "jsonl", "wildfeedback": "json", "parquet": "parquet"}.get(fmt, fmt)
        stem = name if suffix == fmt else f"{name}.{fmt}"  # pairs.trl.jsonl, pairs.parquet
        output = output or self.config.target_dir / "exports" / f"{stem}.{suffix}"
        with self.database(read_only=True) as adapter:
            if adapter.existing(node.relation) is None:  # type: ignore[attr-defined]
                raise WfsqlError(f"model {name} is not built yet", hint=f"run `wfsql build --select +{name}` first")
            relation = adapter.cursor().sql(f"select * from {node.relation}")  # type: ignore[attr-defined]
            columns = list(relation.columns)
            rows = [dict(zip(columns, row, strict=True)) for row in relation.fetchall()]
        count = export_rows(rows, columns, fmt, output)  # type: ignore[arg-type]
        return output, count

    def clean(self, *, include_database: bool = False) -> list[Path]:
        """Delete target/ artifacts. The database (which holds the LLM cache) stays unless asked."""
        target = self.config.target_dir
        if not target.exists():
            return []
        database = Path(self.config.database) if self.config.database != ":memory:" else None
        keep = set()
        if database is not None and not include_database and database.is_relative_to(target):
            keep = {p for p in target.iterdir() if p.name.startswith(database.name)}
        removed = []
        for path in sorted(target.iterdir()):
            if path in keep:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path)
        return removed


def _unbuilt_inputs(manifest: Manifest, node: ModelNode, adapter: Any) -> list[str]:
    """Names of the models and seeds `node`'s SQL reads that do not exist in the database: running its SQL would
    fail on them, so `show` names them instead of DuckDB's error."""
    return sorted(
        parent.name
        for parent in relation_inputs(node, manifest.nodes)
        if parent.resource_type in ("model", "seed") and adapter.existing(parent.relation) is None
    )


def _names(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]

