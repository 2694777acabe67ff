"""Turn `tests:`/`data_tests:` entries in properties YAML and tests/*.sql files into TestNodes.

Compile-time only: test SQL is rendered through the bundled (or the project's) test macros, and
relations are resolved from the compiled models, so a test knows exactly what it will query.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from wfsql.errors import CompileError, Location, WfsqlError, did_you_mean
from wfsql.loader import ProjectFiles, PropertyEntry
from wfsql.nodes import Ephemeral, ModelNode, Node, SeedNode, SourceNode, fingerprint
from wfsql.renderer import PLACEHOLDER, Renderer
from wfsql.resources import bundled_macros_dir

TEST_CONFIG_KEYS = frozenset(
    {
        "severity",
        "warn_if",
        "error_if",
        "limit",
        "where",
        "store_failures",
        "tags",
        "enabled",
        "meta",
        "name",
        "config",
        "arguments",
        "description",
        "fail_calc",
    }
)
# `unique` is not here: see wfsql/testing/execute.py for why it runs as its own query.
BATCHABLE = frozenset({"not_null", "accepted_values", "expression_is_true", "row_count"})
THRESHOLD = re.compile(r"^\s*(==|=|!=|<>|>=|<=|>|<)\s*(\d+)\s*$")


@dataclass(frozen=True)
class TestNode(Node):
    test_type: Literal["generic", "singular"] = "generic"
    test_name: str = ""
    attached_to: str | None = None
    column_name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    compiled_sql: str = ""
    model_sql: str = ""  # what the test reads (the relation, filtered by `where`)
    severity: Literal["error", "warn"] = "error"
    warn_if: str = "!=0"
    error_if: str = "!=0"
    limit: int | None = None
    store_failures: bool = False
    declared_at: str = ""  # file:line (key path), for error messages
    # False when the project overrides the bundled macro: the batched aggregate only mirrors ours.
    bundled_macro: bool = True

    @property
    def resource_type(self) -> Literal["test"]:
        return "test"

    @property
    def batchable(self) -> bool:
        return self.test_type == "generic" and self.bundled_macro and self.test_name in BATCHABLE

    def manifest_extra(self) -> dict[str, Any]:
        return {
            "test_metadata": {"name": self.test_name, "kwargs": self.kwargs},
            "column_name": self.column_name,
            "attached_node": self.attached_to,
            "compiled_code": self.compiled_sql,
            "severity": self.severity,
            "declared_at": self.declared_at,
        }


@dataclass
class _Target:
    node: Node
    relation_sql: str
    display: str  # model name, or source_table for sources
    prefix: str = ""  # "source_" for source tests


def collect_tests(project_name: str, files: ProjectFiles, renderer: Renderer, nodes: dict[str, Node]) -> list[TestNode]:
    collector = _Collector(project_name, files, renderer, nodes)
    collector.generic()
    collector.singular()
    if collector.errors:
        from wfsql.errors import CompileErrors

        raise collector.errors[0] if len(collector.errors) == 1 else CompileErrors(collector.errors)
    return collector.tests


class _Collector:
    def __init__(self, project: str, files: ProjectFiles, renderer: Renderer, nodes: dict[str, Node]) -> None:
        self.project = project
        self.files = files
        self.renderer = renderer
        self.nodes = nodes
        self.tests: list[TestNode] = []
        self.errors: list[WfsqlError] = []
        self.names: set[str] = set()
        self.by_name = {n.name: n for n in nodes.values() if isinstance(n, ModelNode | SeedNode)}
        self.sources = {(n.source_name, n.name): n for n in nodes.values() if isinstance(n, SourceNode)}

    # ------------------------------------------------------------------------------- generic

    def generic(self) -> None:
        for entry in self.files.model_properties:
            self._entity(entry, self.by_name.get(entry.data["name"]), "model")
        for entry in self.files.seed_properties:
            self._entity(entry, self.by_name.get(entry.data["name"]), "seed")
        for entry in self.files.sources:
            for index, table in enumerate(entry.data.get("tables") or []):
                if not isinstance(table, dict) or "name" not in table:
                    continue
                source = self.sources.get((entry.data["name"], table["name"]))
                if source is None:
                    continue
                target = _Target(source, source.relation_sql, f"{entry.data['name']}_{table['name']}", "source_")
                self._tests_of(entry, (*entry.key_path, "tables", index), table, target)

    def _entity(self, entry: PropertyEntry, node: Node | None, kind: str) -> None:
        has_tests = bool(_tests_list(entry.data)) or any(
            _tests_list(c) for c in entry.data.get("columns") or [] if isinstance(c, dict)
        )
        if node is None:
            if has_tests:
                suggestion = did_you_mean(entry.data["name"], self.by_name)
                self.errors.append(
                    CompileError(
                        f"tests declared for {kind} {entry.data['name']!r}, which does not exist"
                        + (f"; {suggestion}" if suggestion else ""),
                        location=entry.location,
                        hint=f"key {_key(entry.key_path)} in {entry.doc.path.name}: fix the name or add the {kind}",
                    )
                )
            return
        if isinstance(node, ModelNode) and isinstance(node.kind, Ephemeral):
            if has_tests:
                self.errors.append(
                    CompileError(
                        f"model {node.name!r} is ephemeral (no relation) and cannot be tested",
                        location=entry.location,
                        hint="materialise it as a view or table to test it",
                    )
                )
            return
        relation = str(node.relation)  # type: ignore[attr-defined]
        self._tests_of(entry, entry.key_path, entry.data, _Target(node, relation, node.name))

    def _tests_of(self, entry: PropertyEntry, key_path: tuple[Any, ...], data: dict[str, Any], target: _Target) -> None:
        for key in ("tests", "data_tests"):
            for index, spec in enumerate(data.get(key) or []):
                self._one(entry, (*key_path, key, index), spec, target, None)
        for c_index, column in enumerate(data.get("columns") or []):
            if not isinstance(column, dict) or "name" not in column:
                continue
            for key in ("tests", "data_tests"):
                for index, spec in enumerate(column.get(key) or []):
                    self._one(entry, (*key_path, "columns", c_index, key, index), spec, target, str(column["name"]))

    def _one(
        self, entry: PropertyEntry, key_path: tuple[Any, ...], spec: Any, target: _Target, column: str | None
    ) -> None:
        location = entry.doc.location(key_path)
        rel = entry.doc.path.relative_to(self.renderer.config.root).as_posix()
        declared = f"{rel}:{location.line} ({_key(key_path)})"
        if isinstance(spec, str):
            test_name, params = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1 and isinstance(next(iter(spec.values())) or {}, dict):
            test_name, raw = next(iter(spec.items()))
            params = dict(raw or {})
        else:
            self.errors.append(
                CompileError(
                    "a test is a name (`- not_null`) or a one-key mapping to its arguments "
                    "(`- accepted_values: {values: [...]}`)",
                    location=location,
                    hint=f"fix {_key(key_path)}",
                )
            )
            return
        test_name = str(test_name).split(".")[-1]  # `dbt_utils.expression_is_true` → expression_is_true
        config = {**(params.pop("config", None) or {})}
        arguments = dict(params.pop("arguments", None) or {})
        for key in list(params):
            if key in TEST_CONFIG_KEYS:
                config.setdefault(key, params.pop(key))
        arguments.update(params)
        if config.get("enabled") is False:
            return
        macro = self.renderer.env.globals.get(f"test_{test_name}")
        if macro is None:
            known = [n[5:] for n in self.renderer.env.globals if n.startswith("test_")]
            suggestion = did_you_mean(test_name, known)
            self.errors.append(
                CompileError(
                    f"unknown test {test_name!r}" + (f"; {suggestion}" if suggestion else ""),
                    location=location,
                    hint=(
                        f"key {_key(key_path)}; define it with "
                        f"{{% test {test_name}(model, column_name) %}} in macros/"
                    ),
                )
            )
            return
        depends = [target.node.unique_id]
        try:
            resolved = {k: self._resolve_argument(v, depends) for k, v in arguments.items()}
        except WfsqlError as exc:
            exc.location = location
            exc.hint = exc.hint or f"key {_key(key_path)} in {entry.doc.path.name}"
            self.errors.append(exc)
            return
        where = config.get("where")
        model_sql = f"(select * from {target.relation_sql} where {where})" if where else target.relation_sql
        call_args: dict[str, Any] = {"model": model_sql, **resolved}
        if column is not None:
            call_args["column_name"] = column
        try:
            sql = str(macro(**call_args)).strip()
        except Exception as exc:  # a user's macro can raise anything
            self.errors.append(
                CompileError(
                    f"test {test_name!r} could not render: {exc}",
                    location=location,
                    hint=f"check {_key(key_path)}",
                )
            )
            return
        name = str(config.get("name") or _test_name(target, test_name, column, arguments))
        name = self._unique(name)
        problem = _config_problem(config)
        if problem:
            self.errors.append(CompileError(problem, location=location, hint=f"fix {_key(key_path)}"))
            return
        severity = str(config.get("severity", "error")).lower()
        self.tests.append(
            TestNode(
                unique_id=f"test.{self.project}.{name}",
                name=name,
                path=entry.doc.path.relative_to(self.renderer.config.root).as_posix(),
                depends_on=tuple(dict.fromkeys(depends)),
                fingerprint=fingerprint("test", sql, config, [self.nodes[d].fingerprint for d in depends]),
                tags=tuple(config.get("tags") or ()),
                config={k: v for k, v in config.items() if isinstance(v, str | int | float | bool | list | dict)},
                test_name=test_name,
                attached_to=target.node.unique_id,
                column_name=column,
                kwargs=_plain(arguments),
                compiled_sql=sql,
                model_sql=model_sql,
                severity=severity,  # type: ignore[arg-type]
                warn_if=str(config.get("warn_if", "!=0")),
                error_if=str(config.get("error_if", "!=0")),
                limit=int(config["limit"]) if config.get("limit") is not None else None,
                store_failures=bool(config.get("store_failures", False)),
                declared_at=declared,
                bundled_macro=self._bundled(f"test_{test_name}"),
            )
        )

    def _bundled(self, macro_name: str) -> bool:
        origin = self.renderer.macro_origin.get(macro_name)
        return origin is not None and origin.resolve().is_relative_to(bundled_macros_dir().resolve())

    def _resolve_argument(self, value: Any, depends: list[str]) -> Any:
        """`ref('x')`/`source('a','b')` strings in arguments become relations (and dependencies)."""
        if isinstance(value, list):
            return [self._resolve_argument(v, depends) for v in value]
        if not isinstance(value, str):
            return value
        text = value.strip()
        if re.match(r"^(ref|source)\s*\(", text):
            text = "{{ " + text + " }}"
        if "{{" not in text:
            return value
        rendered = self.renderer.render_string(text)

        def relation(match: re.Match[str]) -> str:
            kind, target = match.group(1), match.group(2)
            if kind in ("ref", "schema"):
                node = self.by_name.get(target)
                if node is None:
                    suggestion = did_you_mean(target, self.by_name)
                    raise CompileError(
                        f"ref('{target}'): no model or seed of that name" + (f"; {suggestion}" if suggestion else "")
                    )
                depends.append(node.unique_id)
                relation = node.relation  # type: ignore[attr-defined]
                return relation.schema if kind == "schema" else str(relation)
            source_name, _, table = target.partition(".")
            source = self.sources.get((source_name, table))
            if source is None:
                raise CompileError(f"source('{source_name}', '{table}') is not declared")
            depends.append(source.unique_id)
            return source.relation_sql

        return PLACEHOLDER.sub(relation, rendered)

    def _unique(self, name: str) -> str:
        candidate, counter = name, 1
        while candidate in self.names:
            counter += 1
            candidate = f"{name}_{counter}"
        self.names.add(candidate)
        return candidate

    # ------------------------------------------------------------------------------ singular

    def singular(self) -> None:
        for file in self.files.singular_tests:
            try:
                result = self.renderer.render(file.name, file.path, file.text, node=f"test {file.name}")
            except WfsqlError as exc:
                self.errors.append(exc)
                continue
            depends: list[str] = []

            def relation(match: re.Match[str], depends: list[str] = depends, file: Any = file) -> str:
                kind, target = match.group(1), match.group(2)
                if kind == "schema":  # `ref('x').schema`: x's schema, x itself is a dependency through its ref
                    node = self.by_name.get(target)
                    return node.relation.schema if node is not None else target  # type: ignore[attr-defined]
                try:
                    return self._resolve_argument(
                        f"{kind}('{target}')" if kind == "ref" else "source('{}', '{}')".format(*target.split(".", 1)),
                        depends,
                    )
                except CompileError as exc:
                    exc.location = Location(file.path)
                    raise

            try:
                sql = PLACEHOLDER.sub(relation, result.sql).strip().rstrip(";")
            except WfsqlError as exc:
                self.errors.append(exc)
                continue
            config = result.config
            problem = _config_problem(config)
            if problem:
                self.errors.append(CompileError(problem, location=Location(file.path), hint="fix its config(...)"))
                continue
            name = self._unique(file.name)
            self.tests.append(
                TestNode(
                    unique_id=f"test.{self.project}.{name}",
                    name=name,
                    path=file.rel,
                    depends_on=tuple(dict.fromkeys(depends)),
                    fingerprint=fingerprint("test", sql, config, [self.nodes[d].fingerprint for d in depends]),
                    tags=tuple(config.get("tags") or ()),
                    config=config,
                    test_type="singular",
                    test_name=file.name,
                    attached_to=depends[0] if depends else None,
                    compiled_sql=sql,
                    severity=str(config.get("severity", "error")).lower(),  # type: ignore[arg-type]
                    warn_if=str(config.get("warn_if", "!=0")),
                    error_if=str(config.get("error_if", "!=0")),
                    limit=int(config["limit"]) if config.get("limit") is not None else None,
                    store_failures=bool(config.get("store_failures", False)),
                    declared_at=file.rel,
                )
            )


def _config_problem(config: dict[str, Any]) -> str | None:
    """Check severity, thresholds and limit at compile time, where the error can name the YAML key."""
    severity = str(config.get("severity", "error")).lower()
    if severity not in ("error", "warn"):
        return f"severity must be error or warn, not {severity!r}"
    for key in ("warn_if", "error_if"):
        if key in config and not THRESHOLD.match(str(config[key])):
            return f"{key}: cannot read threshold {config[key]!r}; use e.g. '!=0', '>10', '>=5'"
    limit = config.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        return f"limit must be a non-negative integer, not {limit!r}"
    return None


def _tests_list(data: dict[str, Any]) -> list[Any]:
    return list(data.get("tests") or []) + list(data.get("data_tests") or [])


def _key(key_path: tuple[Any, ...]) -> str:
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _flatten(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [part for key in sorted(value) for part in _flatten(value[key])]
    if isinstance(value, list):
        return [part for item in value for part in _flatten(item)]
    return [str(value)]


def _test_name(target: _Target, test_name: str, column: str | None, arguments: dict[str, Any]) -> str:
    """dbt's naming: `<test>_<model>_<column>__<argument values, sorted by key>`, non-word chars as '_'."""
    parts = [part for key in sorted(arguments) for part in _flatten(arguments[key])]
    base = f"{target.prefix}{test_name}_{target.display}" + (f"_{column}" if column else "")
    name = base + "".join(f"__{part}" for part in parts)
    name = re.sub(r"[^0-9a-zA-Z_]+", "_", name)
    if len(name) > 200:
        name = name[:160] + "_" + hashlib.md5(name.encode()).hexdigest()
    return name
