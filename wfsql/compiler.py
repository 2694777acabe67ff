"""Stage 2: files → typed nodes → DAG. Pure: reads files, never opens a database.

Order of work: render every model (placeholders for refs), settle each node's config and relation,
link placeholders to relations (inlining ephemerals as CTEs), check the SQL with sqlglot, build the
DAG, and fingerprint nodes in topological order (a node's fingerprint covers its parents').
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from wfsql.compile_cache import CompileCache
from wfsql.config import MATERIALIZATIONS, ProjectConfig, folder_config, merge_configs
from wfsql.conversation_sources import DERIVED, files_fingerprint, is_conversation_format, resolve_pattern
from wfsql.dag import DAG, CycleError
from wfsql.errors import (
    CompileError,
    CompileErrors,
    DependencyError,
    Location,
    SqlSyntaxError,
    WfsqlError,
    did_you_mean,
    source_snippet,
)
from wfsql.loader import ProjectFiles, PropertyEntry, SqlFile, load_files
from wfsql.nodes import (
    ColumnSpec,
    Ephemeral,
    Incremental,
    ModelKind,
    ModelNode,
    Node,
    Relation,
    SeedNode,
    SourceNode,
    Table,
    View,
    fingerprint,
    quote_identifier,
)
from wfsql.parse_worker import MIN_MODELS_FOR_WORKER, ParseWorker
from wfsql.python_models import parse_links, render_python_model
from wfsql.renderer import PLACEHOLDER, Renderer, RenderResult
from wfsql.sql_analysis import SqlAnalysis, analyze_sql

EPHEMERAL_PREFIX = "__wfsql_cte__"
LLM_FUNCTION_NAMES = frozenset(
    {"llm_classify", "llm_extract", "llm_generate", "llm_embed", "llm_judge", "feedback_signal"}
)
_FILE_READERS = {
    ".csv": "read_csv_auto",
    ".tsv": "read_csv_auto",
    ".txt": "read_csv_auto",
    ".json": "read_json_auto",
    ".jsonl": "read_json_auto",
    ".ndjson": "read_json_auto",
    ".parquet": "read_parquet",
    ".pq": "read_parquet",
}


@dataclass
class Manifest:
    """A compiled project: every node by unique id, the DAG over them, and what compile noticed."""

    config: ProjectConfig
    nodes: dict[str, Node]
    dag: DAG
    warnings: list[str] = field(default_factory=list)
    files: ProjectFiles | None = None
    renderer: Renderer | None = None

    def by_name(self, name: str, resource_types: tuple[str, ...] = ("model", "seed")) -> Node | None:
        for node in self.nodes.values():
            if node.name == name and node.resource_type in resource_types:
                return node
        return None

    def models(self) -> list[ModelNode]:
        return [n for n in self.nodes.values() if isinstance(n, ModelNode)]

    def ordered(self, ids: set[str] | None = None) -> list[str]:
        order = self.dag.topological_order()
        return order if ids is None else [n for n in order if n in ids]


#: Receives (model file path relative to the project, compiled SQL) pairs; see `compile_project`.
CompiledSqlSink = Callable[[list[tuple[str, str]]], None]


def compile_project(
    config: ProjectConfig, *, use_cache: bool = True, while_parsing: CompiledSqlSink | None = None
) -> Manifest:
    """Compile the project. ``while_parsing``, if given, is handed every model's compiled SQL while the parse
    worker runs (only then), so a caller can write target/compiled/ in what would be idle waiting time.
    """
    files = load_files(config)
    renderer = Renderer(config, files.macros)
    cache = CompileCache.open(config, files.macros) if use_cache else CompileCache.disabled()
    digest = _project_digest(config, files)
    stored = cache.get_manifest(digest)
    if stored is not None:  # nothing changed since the last compile: reuse its nodes and graph
        nodes, dag, warnings = stored
        return Manifest(config, nodes, dag, warnings, files, renderer)
    worker = _parse_worker(files, cache)
    try:
        manifest = _Builder(config, files, renderer, cache, worker, while_parsing).build()
    finally:
        if worker is not None:
            worker.close()
    _add_tests(manifest)
    cache.put_manifest(digest, (manifest.nodes, manifest.dag, manifest.warnings))
    cache.save()
    return manifest


def _parse_worker(files: ProjectFiles, cache: CompileCache) -> ParseWorker | None:
    """Fork a sqlglot worker when many models will need parsing, before rendering starts (see parse_worker).

    Models whose text the render cache has not seen stand in for parse misses: they are known before
    rendering, which is when the worker must start for its import to overlap the parent's work.
    """
    if os.environ.get("WFSQL_PARSE_WORKER", "1") == "0":
        return None
    unseen = 0
    for file in files.models:
        if cache.get_render(cache.render_key(file.rel, file.text)) is None:
            unseen += 1
            if unseen >= MIN_MODELS_FOR_WORKER:
                return ParseWorker.start()
    return None


def _project_digest(config: ProjectConfig, files: ProjectFiles) -> str:
    """Everything a compile reads, hashed: file texts, YAML data, seed file stats, config, env vars."""
    seeds = []
    for seed in files.seeds:
        stat = seed.path.stat()
        seeds.append((seed.rel, stat.st_size, stat.st_mtime_ns))
    yaml_docs = [
        (str(entry.doc.path), entry.key_path, entry.data)
        for entry in (*files.model_properties, *files.seed_properties, *files.sources)
    ]
    logs = [  # conversation log files: a changed file must reach the loader's fingerprint
        files_fingerprint(resolve_pattern(config.root, str(table["path"])))
        for entry in files.sources
        for table in entry.data.get("tables") or []
        if isinstance(table, dict)
        and table.get("path")
        and is_conversation_format(table.get("format") or entry.data.get("format"))
    ]
    return fingerprint(
        [(f.rel, f.text) for f in files.models],
        [(f.rel, f.text) for f in files.singular_tests],
        [(str(m.path), m.text) for m in files.macros],
        yaml_docs,
        seeds,
        logs,
        files.doc_blocks,
        config.model_tree,
        config.seed_tree,
        config.test_tree,
        config.schema,
        config.flavor,
        getattr(config, "training", None),
        config.llm,
        sorted(os.environ.items()) if _reads_environment(files) else None,
    )


def _reads_environment(files: ProjectFiles) -> bool:
    return any("env_var" in f.text for f in (*files.models, *files.singular_tests)) or any(
        "env_var" in m.text for m in files.macros if not m.bundled
    )


def _add_tests(manifest: Manifest) -> None:
    """Tests hang off the nodes they check; they join the DAG as leaves."""
    if manifest.files is None or manifest.renderer is None:
        return
    if not _declares_tests(manifest.files):
        return
    from wfsql.testing import collect_tests

    tests = collect_tests(manifest.config.name, manifest.files, manifest.renderer, manifest.nodes)
    if not tests:
        return
    parents = {uid: list(manifest.dag.parents(uid)) for uid in manifest.dag.topological_order()}
    for test in tests:
        manifest.nodes[test.unique_id] = test
        parents[test.unique_id] = list(test.depends_on)
    manifest.dag = DAG(parents)


def _line(text: str, number: int | None) -> str | None:
    """Line ``number`` (1-based) of ``text``, or None when there is no such line."""
    if not number:
        return None
    lines = text.split("\n")
    return lines[number - 1] if number <= len(lines) else None


def _declares_tests(files: ProjectFiles) -> bool:
    if files.singular_tests:
        return True
    entries = [*files.model_properties, *files.seed_properties, *files.sources]
    for entry in entries:
        if "tests" in entry.data or "data_tests" in entry.data:
            return True
        items = [*(entry.data.get("columns") or []), *(entry.data.get("tables") or [])]
        for item in items:
            if isinstance(item, dict) and ("tests" in item or "data_tests" in item or item.get("columns")):
                return True
    return False


class _Builder:
    def __init__(
        self,
        config: ProjectConfig,
        files: ProjectFiles,
        renderer: Renderer,
        cache: CompileCache,
        worker: ParseWorker | None = None,
        while_parsing: CompiledSqlSink | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.while_parsing = while_parsing
        self.analyses: dict[str, SqlAnalysis] = {}  # this compile's analyses by SQL text (the cache may be off)
        self.files = files
        self.renderer = renderer
        self.cache = cache
        self.errors: list[WfsqlError] = []
        self.warnings: list[str] = []
        self.properties = _index_properties(files.model_properties, "model", self.errors)
        self.seed_properties = _index_properties(files.seed_properties, "seed", self.errors)

    # --------------------------------------------------------------------------------- pipeline

    def build(self) -> Manifest:
        rendered = self._render_models()
        seeds = self._seeds()
        sources = self._sources()
        models = self._settle_models(rendered)
        self._check_unique_names(models, seeds)
        self._raise_if_errors()
        named: dict[str, _Pending | SeedNode] = {**{s.name: s for s in seeds.values()}, **models}
        self._link(models, named, sources)
        self._raise_if_errors()
        parents = self._dependencies(models, seeds, sources)
        trains = self._training(models, seeds, parents)
        dag = DAG(parents)
        try:
            order = dag.topological_order()
        except CycleError as cycle:
            names = [self._display(node_id, models) for node_id in cycle.path]
            first = models.get(cycle.path[0].split(".")[-1])
            raise DependencyError(
                "dependency cycle: " + " -> ".join(names),
                location=Location(first.file.path) if first else None,
                hint="a model cannot depend on itself through ref(); break the loop by splitting a model",
            ) from None
        nodes = self._fingerprint(order, dag, models, seeds, sources, trains)
        return Manifest(self.config, nodes, dag, self.warnings, self.files, self.renderer)

    def _raise_if_errors(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise CompileErrors(self.errors)

    # ------------------------------------------------------------------------------- rendering

    def _render_models(self) -> dict[str, tuple[SqlFile, RenderResult]]:
        out: dict[str, tuple[SqlFile, RenderResult]] = {}
        for file in self.files.models:
            key = self.cache.render_key(file.rel, file.text)
            result = self.cache.get_render(key)
            if result is None:
                try:
                    if file.rel.endswith(".py"):
                        result = render_python_model(file.name, file.text)
                    else:
                        result = self.renderer.render(file.name, file.absolute, file.text, node=f"model {file.name}")
                except WfsqlError as exc:
                    exc.location = exc.location or Location(file.path)
                    self.errors.append(exc)
                    continue
                self.cache.put_render(key, result)
            if file.name in out:
                self.errors.append(
                    CompileError(
                        f"two models are named {file.name!r}: {out[file.name][0].rel} and {file.rel}",
                        location=Location(file.path),
                        hint="model names are file names and must be unique; rename one file",
                    )
                )
                continue
            out[file.name] = (file, result)
        return out

    # --------------------------------------------------------------------------------- configs

    def _settle_models(self, rendered: dict[str, tuple[SqlFile, RenderResult]]) -> dict[str, _Pending]:
        models: dict[str, _Pending] = {}
        for name, (file, result) in rendered.items():
            props = self.properties.get(name)
            merged: dict[str, Any] = {"materialized": "view"}
            merge_configs(merged, folder_config(self.config.model_tree, self.config.name, file.folders, name))
            if props is not None:
                merge_configs(merged, dict(props.data.get("config") or {}))
            merge_configs(merged, result.config)
            if merged.get("enabled") is False:
                continue
            if file.rel.endswith(".py") and "materialized" not in result.config:
                merged["materialized"] = "table"  # Python models produce data; a folder's view default cannot apply
            try:
                kind = _model_kind(merged)
            except CompileError as exc:
                exc.location, exc.node = Location(file.path), f"model {name}"
                self.errors.append(exc)
                continue
            relation = Relation(self._schema(merged.get("schema")), str(merged.get("alias") or name))
            models[name] = _Pending(file=file, render=result, config=merged, kind=kind, relation=relation, props=props)
        for name, entry in self.properties.items():
            if name not in rendered:
                self.warnings.append(
                    f"{entry.doc.path.name}:{entry.doc.line_of(entry.key_path)}: properties for model "
                    f"{name!r}, but no models/**/{name}.sql exists"
                )
        return models

    def _schema(self, custom: Any) -> str:
        """dbt's default for dbt projects (`<target schema>_<custom>`); the custom schema itself here."""
        if self.renderer.has_project_macro("generate_schema_name"):
            macro = self.renderer.env.globals["generate_schema_name"]
            return str(macro(custom, None)).strip()
        if custom is None or str(custom).strip() == "":
            return self.config.schema
        if self.config.flavor == "dbt":
            return f"{self.config.schema}_{str(custom).strip()}"
        return str(custom).strip()

    def _seeds(self) -> dict[str, SeedNode]:
        seeds: dict[str, SeedNode] = {}
        for file in self.files.seeds:
            merged: dict[str, Any] = {}
            merge_configs(merged, folder_config(self.config.seed_tree, self.config.name, file.folders, file.name))
            props = self.seed_properties.get(file.name)
            if props is not None:
                merge_configs(merged, dict(props.data.get("config") or {}))
            if merged.get("enabled") is False:
                continue
            digest = hashlib.blake2b(file.path.read_bytes(), digest_size=16).hexdigest()
            relation = Relation(self._schema(merged.get("schema")), str(merged.get("alias") or file.name))
            seeds[file.name] = SeedNode(
                unique_id=f"seed.{self.config.name}.{file.name}",
                name=file.name,
                path=file.rel,
                depends_on=(),
                fingerprint=fingerprint("seed", digest, merged, str(relation)),
                tags=tuple(merged.get("tags", [])),
                config=merged,
                description=_describe(props.data.get("description", "") if props else "", self.files.doc_blocks),
                relation=relation,
                file_path=str(file.path),
                column_types=dict(merged.get("column_types") or {}),
                delimiter=str(merged.get("delimiter") or ("\t" if file.path.suffix == ".tsv" else ",")),
                columns=_columns(props, self.files.doc_blocks),
            )
        return seeds

    def _sources(self) -> dict[tuple[str, str], SourceNode]:
        sources: dict[tuple[str, str], SourceNode] = {}
        for entry in self.files.sources:
            source_name = entry.data["name"]
            source_meta = entry.data.get("meta") or {}
            source_config = entry.data.get("config") or {}
            tables = entry.data.get("tables") or []
            if not isinstance(tables, list):
                self.errors.append(
                    CompileError(f"source {source_name!r}: `tables:` must be a list", location=entry.location)
                )
                continue
            for index, table in enumerate(tables):
                key_path = (*entry.key_path, "tables", index)
                if not isinstance(table, dict) or "name" not in table:
                    self.errors.append(
                        CompileError(
                            f"source {source_name!r}: tables[{index}] needs a `name:`",
                            location=entry.doc.location(key_path),
                        )
                    )
                    continue
                try:
                    node = self._source_node(entry, source_name, source_meta, source_config, table)
                except CompileError as exc:
                    self.errors.append(exc)
                    continue
                if is_conversation_format(node.format):
                    self._conversation_tables(entry, table, node, sources)
                    continue
                existing = sources.get((source_name, table["name"]))
                if existing is not None and existing.loaded_by:  # tests/docs on a conversation source's table
                    sources[(source_name, table["name"])] = replace(
                        existing,
                        description=node.description or existing.description,
                        columns=node.columns or existing.columns,
                        tags=node.tags or existing.tags,
                    )
                    continue
                if existing is not None:
                    self.errors.append(
                        CompileError(
                            f"source {source_name}.{table['name']} is declared twice",
                            location=entry.doc.location(key_path),
                        )
                    )
                sources[(source_name, table["name"])] = node
        return sources

    def _source_node(
        self,
        entry: PropertyEntry,
        source_name: str,
        meta: dict[str, Any],
        config: dict[str, Any],
        table: dict[str, Any],
    ) -> SourceNode:
        name = str(table["name"])
        table_meta = {**meta, **(table.get("meta") or {})}
        table_config = {**config, **(table.get("config") or {})}
        location = (
            table.get("path")
            or table.get("external_location")
            or table_meta.get("external_location")
            or table_config.get("external_location")
        )
        fmt = table.get("format") or entry.data.get("format")
        external: str | None = None
        if location:
            # dbt-duckdb fills the template from the table's fields and meta (SourceConfig.as_dict())
            fields = {
                "name": name,
                "identifier": table.get("identifier", name),
                "schema": table.get("schema") or entry.data.get("schema") or source_name,
                "database": table.get("database") or entry.data.get("database"),
                **table_meta,
            }
            try:
                location = str(location).format_map(fields)
            except (KeyError, IndexError, ValueError) as exc:
                raise CompileError(
                    f"source {source_name}.{name}: cannot fill in external_location {location!r} ({exc!r})",
                    location=entry.location,
                    hint="use {name}, {identifier}, {schema}, {database} or a key of the table's meta",
                ) from None
            relation_sql, external = self._external_reader(location, fmt)
        else:
            identifier = str(table.get("identifier") or name)
            schema = str(table.get("schema") or entry.data.get("schema") or source_name)
            database = table.get("database") or entry.data.get("database")
            relation_sql = str(Relation(schema, identifier))
            if database:
                relation_sql = f"{quote_identifier(str(database))}.{relation_sql}"
        return SourceNode(
            unique_id=f"source.{self.config.name}.{source_name}.{name}",
            name=name,
            path=entry.doc.path.relative_to(self.config.root).as_posix(),
            depends_on=(),
            fingerprint=fingerprint("source", relation_sql),
            tags=tuple(table.get("tags") or entry.data.get("tags") or ()),
            config=table_config,
            description=_describe(table.get("description", ""), self.files.doc_blocks),
            source_name=source_name,
            relation_sql=relation_sql,
            external_path=external,
            format=fmt,
            columns=_columns_from(table.get("columns"), self.files.doc_blocks),
        )

    def _conversation_tables(
        self, entry: PropertyEntry, table: dict[str, Any], node: SourceNode, sources: dict[tuple[str, str], SourceNode]
    ) -> None:
        """A conversation log source: one loader node plus its turn and quarantine tables."""
        location = table.get("path") or table.get("external_location")
        if not location:
            self.errors.append(
                CompileError(
                    f"source {node.source_name}.{node.name} has format {node.format!r} but no `path:`",
                    location=entry.location,
                    hint="point `path:` at the log files (a file, folder or glob)",
                )
            )
            return
        pattern = resolve_pattern(self.config.root, str(location))
        schema = str(table.get("schema") or entry.data.get("schema") or node.source_name)
        loader = replace(
            node,
            relation_sql=str(Relation(schema, node.name)),
            external_path=pattern,
            fingerprint=fingerprint("conversations", node.format, pattern, files_fingerprint(pattern)),
            config={**node.config, "schema": schema},
        )
        sources[(node.source_name, node.name)] = loader
        for suffix in DERIVED:
            name = f"{node.name}_{suffix}"
            declared = sources.get((node.source_name, name))  # listed before the conversation table itself
            sources[(node.source_name, name)] = replace(
                node,
                unique_id=f"source.{self.config.name}.{node.source_name}.{name}",
                name=name,
                relation_sql=str(Relation(schema, name)),
                external_path=None,
                format=None,
                depends_on=(loader.unique_id,),
                fingerprint=fingerprint("derived", loader.fingerprint, suffix),
                loaded_by=loader.unique_id,
                columns=declared.columns if declared else (),
                description=declared.description if declared else "",
            )

    def _external_reader(self, location: str, fmt: str | None) -> tuple[str, str | None]:
        """(FROM-able SQL, file read) for a source's path / external_location, as dbt-duckdb reads it.

        A reader call is used as it is. A quoted `'...'` literal (which dbt-duckdb also leaves alone) or a
        bare path is read with a reader chosen from `format` or the extension. A relative local path is
        resolved against the project folder (dbt-duckdb leaves it to the process's working directory; see
        "Known differences" in tests/dbt_parity/README.md); URLs such as s3://... are kept verbatim
        (a Path would fold their `//`).
        """
        if "(" in location:  # already a reader call, dbt-duckdb style
            return location, None
        if len(location) >= 2 and location.startswith("'") and location.endswith("'"):
            location = location[1:-1].replace("''", "'")
        if "://" in location:
            target = location
        else:
            path = Path(os.path.expanduser(location))
            target = str(path if path.is_absolute() else self.config.root / path)
        suffixes = [s.lower() for s in Path(target).suffixes if s.lower() not in (".gz", ".zst", ".gzip")]
        reader = (
            {"csv": "read_csv_auto", "json": "read_json_auto", "parquet": "read_parquet"}.get(str(fmt or "").lower())
            or (_FILE_READERS.get(suffixes[-1]) if suffixes else None)
            or "read_csv_auto"
        )
        literal = target.replace("'", "''")
        return f"{reader}('{literal}')", target

    def _check_unique_names(self, models: dict[str, _Pending], seeds: dict[str, SeedNode]) -> None:
        for name in models.keys() & seeds.keys():
            self.errors.append(
                CompileError(
                    f"a model and a seed are both named {name!r}: {models[name].file.rel} and {seeds[name].path}",
                    location=Location(models[name].file.path),
                    hint="ref() names must be unique across models and seeds; rename one of them",
                )
            )
        # Two nodes building one relation (same alias, or names differing only in case, which DuckDB folds)
        # would overwrite each other in whichever order the threads ran them.
        owners: dict[tuple[str, str], str] = {}
        built = [(p.relation, p.file.rel) for p in models.values() if not isinstance(p.kind, Ephemeral)]
        built += [(s.relation, s.path) for name, s in seeds.items() if name not in models]
        for relation, rel_path in built:
            key = (relation.schema.lower(), relation.identifier.lower())
            if key in owners:
                self.errors.append(
                    CompileError(
                        f"{owners[key]} and {rel_path} both build the relation {relation.label}",
                        location=Location(self.config.root / rel_path),
                        hint="give one of them another alias or schema, or rename its file",
                    )
                )
            else:
                owners[key] = rel_path

    # -------------------------------------------------------------------------------- linking

    def _link(
        self,
        models: dict[str, _Pending],
        named: dict[str, _Pending | SeedNode],
        sources: dict[tuple[str, str], SourceNode],
    ) -> None:
        """Replace placeholders by relation names; report unknown refs/sources with suggestions."""

        def relation_text(pending: _Pending, kind: str, target: str) -> str:
            if kind == "schema":  # `this.schema` / `ref('x').schema`; an unknown x is reported by its ref
                owner = pending if target == pending.file.name else named.get(target)
                return owner.relation.schema if owner is not None else target
            if kind == "ref":
                if target == pending.file.name:
                    return str(pending.relation)
                ref_target = named.get(target)
                if ref_target is None:
                    self._unknown(pending, "ref", target, named.keys(), f"ref('{target}')")
                    return target
                if isinstance(ref_target, _Pending) and isinstance(ref_target.kind, Ephemeral):
                    return quote_identifier(EPHEMERAL_PREFIX + target)
                return str(ref_target.relation)
            source_name, _, table_name = target.partition(".")
            source = sources.get((source_name, table_name))
            if source is None:
                known = [f"{s}.{t}" for s, t in sources]
                self._unknown(pending, "source", target, known, f"source('{source_name}', '{table_name}')")
                return target
            return source.relation_sql

        for pending in models.values():

            def substitute(match: re.Match[str], pending: _Pending = pending) -> str:
                return relation_text(pending, match.group(1), match.group(2))

            pending.linked_sql = PLACEHOLDER.sub(substitute, _strip_semicolon(pending.render.sql))
            if pending.render.incremental_sql is not None:
                pending.linked_incremental_sql = PLACEHOLDER.sub(
                    substitute, _strip_semicolon(pending.render.incremental_sql)
                )

        # Compiled SQL (ephemerals inlined) needs no parse, so it is ready before the analyses are.
        for pending in models.values():
            pending.compiled_sql = self._with_ephemerals(pending.linked_sql, pending, models)
            if pending.linked_incremental_sql is not None:
                pending.compiled_incremental_sql = self._with_ephemerals(
                    pending.linked_incremental_sql, pending, models
                )
        self._analyse_all(models)
        for name, pending in models.items():
            self._check_sql(name, pending, models)
            llm_calls = pending.functions & LLM_FUNCTION_NAMES
            if llm_calls and isinstance(pending.kind, View | Ephemeral):
                self.errors.append(
                    CompileError(
                        f"model {name!r} calls {', '.join(sorted(llm_calls))} but is a {pending.kind.kind}: its LLM "
                        "answers would be recomputed on every read",
                        location=Location(pending.file.path),
                        hint="materialise it as a table or incremental model: {{ config(materialized='table') }}",
                    )
                )

    def _unknown(self, pending: _Pending, kind: str, target: str, known: Any, call: str) -> None:
        line = _line_of_call(pending.file.text, target)
        suggestion = did_you_mean(target, known)
        self.errors.append(
            DependencyError(
                f"{call}: no {'model or seed' if kind == 'ref' else 'source'} named {target!r}"
                + (f"; {suggestion}" if suggestion else ""),
                location=Location(pending.file.path, line),
                node=f"model {pending.file.name}",
                snippet=source_snippet(pending.file.text, line) if line else None,
                hint="create the model, or declare the source in a YAML file under models/"
                if kind == "source"
                else "ref() takes a model or seed file name without .sql",
            )
        )

    def _analyse_all(self, models: dict[str, _Pending]) -> None:
        """Fill `self.analyses` for every model's SQL: from the cache, else parsed in one batch (on the worker
        when one runs)."""
        missing: dict[str, str] = {}  # SQL -> cache key
        for pending in models.values():
            if pending.is_python:
                continue
            for sql in filter(None, (pending.linked_sql, pending.linked_incremental_sql)):
                if sql in self.analyses or sql in missing:
                    continue
                key = self.cache.sql_key(sql)
                cached = self.cache.get_parse(key)
                if cached is None:
                    missing[sql] = key
                else:
                    self.analyses[sql] = cached
        if self.worker is not None:
            self.worker.submit(list(missing))
            if self.while_parsing is not None and not self.errors:
                self.while_parsing(
                    [(p.file.rel, p.file.text if p.is_python else p.compiled_sql) for p in models.values()]
                )
            analyses: list[SqlAnalysis] = self.worker.results()
        else:
            analyses = [analyze_sql(sql) for sql in missing]
        for (sql, key), analysis in zip(missing.items(), analyses, strict=True):
            self.analyses[sql] = analysis
            self.cache.put_parse(key, analysis)

    def _check_sql(self, name: str, pending: _Pending, models: dict[str, _Pending]) -> None:
        if pending.is_python:
            if not isinstance(pending.kind, Table):
                self.errors.append(
                    CompileError(
                        f"Python model {name!r} must be materialized as a table, not {pending.kind.kind}",
                        location=Location(pending.file.path),
                        hint="wf.config(materialized='table') or leave it out",
                    )
                )
            return
        for sql in filter(None, (pending.linked_sql, pending.linked_incremental_sql)):
            analysis = self.analyses[sql]
            if analysis.error:
                # The position is in the compiled SQL: show the model's own line only where it is the same
                # text, else a Jinja call before the error would shift the caret off it.
                source_line = _line(pending.file.text, analysis.line)
                same_line = source_line is not None and source_line == _line(sql, analysis.line)
                text = pending.file.text if same_line else sql
                where = "" if same_line else " (line of the compiled SQL, see target/compiled/)"
                self.errors.append(
                    SqlSyntaxError(
                        analysis.error + where,
                        location=Location(pending.file.path, analysis.line, analysis.column),
                        node=f"model {name}",
                        snippet=source_snippet(text, analysis.line, analysis.column) if analysis.line else None,
                        hint="fix the SQL; wfsql parses every model with sqlglot's DuckDB dialect",
                    )
                )
                return
            pending.tables_read.update(analysis.tables)
            pending.functions.update(analysis.functions)

    def _with_ephemerals(self, sql: str, pending: _Pending, models: dict[str, _Pending]) -> str:
        if pending.is_python:
            return sql
        chain = _ephemeral_chain(pending, models)
        if not chain:
            return sql
        ctes = ",\n".join(
            f"{quote_identifier(EPHEMERAL_PREFIX + name)} AS (\n{models[name].linked_sql}\n)" for name in chain
        )
        return _prepend_ctes(ctes, sql)

    # --------------------------------------------------------------------------- dependencies

    def _dependencies(
        self,
        models: dict[str, _Pending],
        seeds: dict[str, SeedNode],
        sources: dict[tuple[str, str], SourceNode],
    ) -> dict[str, list[str]]:
        project = self.config.name
        by_relation: dict[tuple[str, str], str] = {}
        for name, pending in models.items():
            if not isinstance(pending.kind, Ephemeral):
                by_relation[(pending.relation.schema.lower(), pending.relation.identifier.lower())] = name
        for seed in seeds.values():
            by_relation[(seed.relation.schema.lower(), seed.relation.identifier.lower())] = seed.name
        default_schema = self.config.schema.lower()

        parents: dict[str, list[str]] = {}
        for seed in seeds.values():
            parents[seed.unique_id] = []
        for source in sources.values():
            parents[source.unique_id] = list(source.depends_on)
        for name, pending in models.items():
            deps: list[str] = []
            for ref in pending.render.refs:
                if ref == name:
                    continue
                deps.append(_uid(ref, models, seeds, project))
            for source_name, table_name in pending.render.sources:
                deps.append(sources[(source_name, table_name)].unique_id)
            declared = set(pending.render.refs)
            for schema, table in sorted(pending.tables_read):
                target = by_relation.get((schema or default_schema, table))
                if target is None or target == name or target in declared:
                    continue
                deps.append(_uid(target, models, seeds, project))
                self.warnings.append(
                    f"{pending.file.rel}: model {name!r} reads {schema + '.' if schema else ''}{table} directly; "
                    f"use {{{{ ref('{target}') }}}} so wfsql knows the dependency (added it for this run)"
                )
            parents[f"model.{project}.{name}"] = deps
        return parents

    # ---------------------------------------------------------------------------- fingerprints

    def _fingerprint(
        self,
        order: list[str],
        dag: DAG,
        models: dict[str, _Pending],
        seeds: dict[str, SeedNode],
        sources: dict[tuple[str, str], SourceNode],
        trains: dict[str, Node] | None = None,
    ) -> dict[str, Node]:
        by_id: dict[str, Node] = {s.unique_id: s for s in seeds.values()}
        by_id.update({s.unique_id: s for s in sources.values()})
        pending_by_id = {f"model.{self.config.name}.{name}": p for name, p in models.items()}
        nodes: dict[str, Node] = {}
        for node_id in order:
            if node_id in by_id:
                nodes[node_id] = by_id[node_id]
                continue
            if trains and node_id in trains:  # training target: its settings + its parents' fingerprints
                train = trains[node_id]
                parent_prints = [nodes[p].fingerprint for p in dag.parents(node_id)]
                nodes[node_id] = replace(train, fingerprint=fingerprint(train.fingerprint, parent_prints))
                continue
            pending = pending_by_id[node_id]
            parents = dag.parents(node_id)
            config = _json_safe(pending.config)
            props = pending.props.data if pending.props else {}
            nodes[node_id] = ModelNode(
                unique_id=node_id,
                name=pending.file.name,
                path=pending.file.rel,
                depends_on=parents,
                fingerprint=fingerprint(
                    "model",
                    pending.compiled_sql,
                    pending.compiled_incremental_sql,
                    config,
                    str(pending.relation),
                    [nodes[p].fingerprint for p in parents],
                ),
                tags=tuple(config.get("tags", [])),
                config=config,
                description=_describe(props.get("description", ""), self.files.doc_blocks),
                kind=pending.kind,
                relation=pending.relation,
                raw_sql=pending.file.text,
                compiled_sql=pending.file.text if pending.is_python else pending.compiled_sql,
                incremental_sql=pending.compiled_incremental_sql,
                language="python" if pending.is_python else "sql",
                python_links=tuple(sorted(parse_links(pending.linked_sql).items())) if pending.is_python else (),
                sources=tuple(f"{s}.{t}" for s, t in pending.render.sources),
                columns=_columns(pending.props, self.files.doc_blocks),
                pre_hooks=tuple(config.get("pre_hook", [])),
                post_hooks=tuple(config.get("post_hook", [])),
                llm_functions=tuple(sorted(pending.functions & LLM_FUNCTION_NAMES)),
            )
        return nodes

    def _training(
        self, models: dict[str, _Pending], seeds: dict[str, SeedNode], parents: dict[str, list[str]]
    ) -> dict[str, Node]:
        """Training targets (`training:` in the project file) and the edges to and from them."""
        if not self.config.training and not (self.config.llm or {}).get("models"):
            return {}
        from wfsql.training.compile import build_training_graph

        project = self.config.name
        relations = {name: (f"model.{project}.{name}", p.relation) for name, p in models.items()}
        relations.update({name: (s.unique_id, s.relation) for name, s in seeds.items() if name not in models})
        sql = {name: (f"model.{project}.{name}", p.config, p.compiled_sql) for name, p in models.items()}
        graph = build_training_graph(self.config, relations, sql)
        parents.update(graph.parents)
        for uid, extra in graph.model_parents.items():
            parents[uid] = [*parents[uid], *extra]
        return dict(graph.nodes)

    def _display(self, node_id: str, models: dict[str, _Pending]) -> str:
        name = node_id.split(".")[-1]
        pending = models.get(name)
        return f"{name} ({pending.file.rel})" if pending else name


@dataclass
class _Pending:
    """A model between rendering and its final, immutable ModelNode."""

    file: SqlFile
    render: RenderResult
    config: dict[str, Any]
    kind: ModelKind
    relation: Relation
    props: PropertyEntry | None
    linked_sql: str = ""
    linked_incremental_sql: str | None = None
    compiled_sql: str = ""
    compiled_incremental_sql: str | None = None
    tables_read: set[tuple[str, str]] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)

    @property
    def is_python(self) -> bool:
        return self.file.rel.endswith(".py")


def _uid(name: str, models: dict[str, _Pending], seeds: dict[str, SeedNode], project: str) -> str:
    return f"model.{project}.{name}" if name in models else seeds[name].unique_id


def _model_kind(config: dict[str, Any]) -> ModelKind:
    materialized = config.get("materialized", "view")
    if materialized == "view":
        return View()
    if materialized == "table":
        return Table()
    if materialized == "ephemeral":
        return Ephemeral()
    if materialized == "incremental":
        unique_key = config.get("unique_key") or ()
        keys = (unique_key,) if isinstance(unique_key, str) else tuple(unique_key)
        strategy = config.get("incremental_strategy") or ("delete+insert" if keys else "append")
        if strategy not in ("append", "merge", "delete+insert"):
            raise CompileError(f"unknown incremental_strategy {strategy!r}", hint="use append, merge or delete+insert")
        if strategy != "append" and not keys:
            raise CompileError(f"incremental_strategy {strategy!r} needs a unique_key")
        on_change = config.get("on_schema_change") or "ignore"
        if on_change not in ("ignore", "fail", "append_new_columns", "sync_all_columns"):
            raise CompileError(
                f"unknown on_schema_change {on_change!r}",
                hint="use ignore, fail, append_new_columns or sync_all_columns",
            )
        return Incremental(strategy=strategy, unique_key=keys, on_schema_change=on_change)
    raise CompileError(f"unknown materialization {materialized!r}", hint=f"use one of {', '.join(MATERIALIZATIONS)}")


def _index_properties(entries: list[PropertyEntry], kind: str, errors: list[WfsqlError]) -> dict[str, PropertyEntry]:
    index: dict[str, PropertyEntry] = {}
    for entry in entries:
        name = entry.data["name"]
        if name in index:
            first = index[name]
            errors.append(
                CompileError(
                    f"{kind} {name!r} has properties in two places: {first.doc.path.name}:"
                    f"{first.doc.line_of(first.key_path)} and "
                    f"{entry.doc.path.name}:{entry.doc.line_of(entry.key_path)}",
                    location=entry.location,
                    hint="keep one entry per name",
                )
            )
            continue
        index[name] = entry
    return index


_DOC_CALL = re.compile(r"\{\{\s*doc\(\s*['\"](\w+)['\"]\s*\)\s*\}\}")


def _describe(text: Any, doc_blocks: dict[str, str]) -> str:
    return _DOC_CALL.sub(lambda m: doc_blocks.get(m.group(1), ""), str(text or ""))


def _columns_from(columns: Any, doc_blocks: dict[str, str]) -> tuple[ColumnSpec, ...]:
    if not isinstance(columns, list):
        return ()
    return tuple(
        ColumnSpec(str(c["name"]), _describe(c.get("description", ""), doc_blocks), c.get("data_type"))
        for c in columns
        if isinstance(c, dict) and "name" in c
    )


def _columns(props: PropertyEntry | None, doc_blocks: dict[str, str]) -> tuple[ColumnSpec, ...]:
    return _columns_from(props.data.get("columns"), doc_blocks) if props else ()


def _json_safe(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if isinstance(v, str | int | float | bool | list | dict | None)}


def _strip_semicolon(sql: str) -> str:
    stripped = sql.rstrip()
    while stripped.endswith(";"):
        stripped = stripped[:-1].rstrip()
    return stripped + sql[len(sql.rstrip()) :] if stripped != sql.rstrip() else sql


def _line_of_call(text: str, name: str) -> int | None:
    match = re.search(r"(ref|source)\s*\([^)]*['\"]" + re.escape(name.split(".")[-1]) + r"['\"]", text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _ephemeral_chain(pending: _Pending, models: dict[str, _Pending]) -> list[str]:
    """Ephemeral models this model reaches through ephemerals only, parents before children."""
    chain: list[str] = []
    seen: set[str] = set()

    def visit(model: _Pending, stack: tuple[str, ...]) -> None:
        for ref in model.render.refs:
            target = models.get(ref)
            if target is None or not isinstance(target.kind, Ephemeral) or ref in seen or ref in stack:
                continue
            visit(target, (*stack, ref))
            seen.add(ref)
            chain.append(ref)

    visit(pending, (pending.file.name,))
    return chain


# Whitespace and comments before the first keyword, in any mix: a `{{ config(...) }}` line renders to a bare
# newline, and the WITH after it must still be found (else the ephemerals get a second WITH in front of it).
_LEADING = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_WITH = re.compile(r"with(\s+recursive)?\s", re.IGNORECASE)


def _prepend_ctes(ctes: str, sql: str) -> str:
    lead = _LEADING.match(sql)
    start = lead.end() if lead else 0
    with_clause = _WITH.match(sql, start)
    if with_clause:
        keyword = sql[start : with_clause.end()]
        return f"{sql[:start]}{keyword}{ctes},\n{sql[with_clause.end() :]}"
    return f"{sql[:start]}with {ctes}\n{sql[start:]}"
