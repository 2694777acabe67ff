"""Jinja rendering of models, tests and macros, without a database.

Rendering happens once per file at compile time. `ref()` and `source()` return placeholders that the
compiler resolves after every model's config is known (a model's `config()` can change its schema or
alias, so names are only final once all files are rendered). Models that call `is_incremental()` are
rendered twice, once for each answer, so the choice can be made at run time without re-rendering.

Most model files use Jinja only for plain `ref`/`source`/`config`/`var` calls with literal arguments;
those take a static fast path (regex + `ast.literal_eval`) that gives the same text as Jinja in a
fraction of the time.
"""

from __future__ import annotations

import ast
import datetime
import json
import os
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from wfsql.config import ProjectConfig
from wfsql.errors import JinjaRenderError, Location, WfsqlError, source_snippet

# `schema` placeholders stand for the final schema of a ref()'d model (`this.schema`, `ref('x').schema`):
# like relation names, a schema is only known once every model's config() has been read.
PLACEHOLDER = re.compile("\ue000(ref|src|schema):([^\ue001]*)\ue001")


def ref_placeholder(name: str) -> str:
    return f"\ue000ref:{name}\ue001"


def schema_placeholder(name: str) -> str:
    return f"\ue000schema:{name}\ue001"


def source_placeholder(source_name: str, table_name: str) -> str:
    return f"\ue000src:{source_name}.{table_name}\ue001"


class MacroReturn(Exception):
    """dbt's `{{ return(x) }}`: leaves the macro with a Python value."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _enable_macro_return() -> None:
    """Let `{{ return(x) }}` leave a macro with x, however deeply macros call each other."""
    import jinja2.runtime

    macro = jinja2.runtime.Macro
    if getattr(macro, "_wfsql_return", False):
        return
    original = macro._invoke

    def invoke(self: Any, arguments: list[Any], autoescape: bool) -> Any:
        try:
            return original(self, arguments, autoescape)
        except MacroReturn as returned:
            return returned.value

    macro._invoke = invoke  # type: ignore[method-assign]
    macro._wfsql_return = True  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MacroFile:
    path: Path
    text: str
    bundled: bool = False


@dataclass
class RenderResult:
    """What rendering one file produced and what it asked for."""

    sql: str
    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    env_vars: dict[str, str | None] = field(default_factory=dict)
    uses_is_incremental: bool = False
    incremental_sql: str | None = None  # rendered with is_incremental() true, when it is used


class RefRelation:
    """What `ref()`/`this` returns: prints as a placeholder, with dbt's common attributes.

    `schema` is itself a placeholder for refs (dbt projects read `{{ this.schema }}`); `database` is the
    DuckDB catalog name (the database file's stem), as dbt-duckdb's relations report it.
    """

    def __init__(self, name: str, placeholder: str, *, schema: str | None = None, database: str | None = None) -> None:
        self.name = name
        self.identifier = name
        self.table = name
        self.schema = schema
        self.database = database
        self._placeholder = placeholder

    def __str__(self) -> str:
        return self._placeholder

    def __html__(self) -> str:
        return self._placeholder

    def include(self, **_: Any) -> RefRelation:
        return self

    def render(self) -> str:
        return self._placeholder


class _ConfigCall:
    """`config(...)` records a model's config; `config.get(key)` reads it, as in dbt."""

    def __init__(self, state: _RenderState) -> None:
        self._state = state

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        if args and isinstance(args[0], dict):
            kwargs = {**args[0], **kwargs}
        for key, value in kwargs.items():
            self._state.config[key.replace("-", "_")] = value
        return ""

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.config.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self._state.config:
            raise WfsqlError(f"config {key!r} is required by this model but not set")
        return self._state.config[key]


@dataclass
class _RenderState:
    name: str
    incremental: bool
    refs: list[str] = field(default_factory=list)
    sources: list[tuple[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    env_vars: dict[str, str | None] = field(default_factory=dict)
    asked_incremental: bool = False


@dataclass(frozen=True)
class TargetInfo:
    """`{{ target }}` in templates."""

    name: str
    schema: str
    database: str
    threads: int
    type: str = "duckdb"
    profile_name: str = ""

    @property
    def path(self) -> str:
        return self.database


class _Adapter:
    """The few `adapter.*` helpers dbt projects use without a database."""

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer

    @staticmethod
    def quote(identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    def dispatch(self, macro_name: str, macro_namespace: str | None = None) -> Callable[..., Any]:
        for candidate in (f"duckdb__{macro_name}", f"default__{macro_name}", macro_name):
            macro = self._renderer.env.globals.get(candidate)  # type: ignore[union-attr]
            if macro is not None:
                return macro  # type: ignore[return-value]
        raise WfsqlError(f"adapter.dispatch: no macro named {macro_name!r} (or duckdb__/default__ variants)")


class _Exceptions:
    @staticmethod
    def raise_compiler_error(message: str) -> None:
        raise WfsqlError(message)

    @staticmethod
    def warn(message: str) -> str:
        return ""


# dbt's `{% test name(...) %}` blocks are macros named test_<name>.
_TEST_BLOCK = re.compile(r"\{(%-?)\s*test\s+(\w+)\s*\(")
_END_TEST = re.compile(r"\{(%-?)\s*endtest\s*(-?%)\}")
_FAST_CALL = re.compile(r"\{\{\s*((?:ref|source|config|var)\s*\((?:[^{}()]|\([^()]*\))*\))\s*\}\}")
_ANY_JINJA = re.compile(r"\{[{%#]")
# Jinja rewrites every line ending (\r\n, \r) to its newline_sequence, '\n'; the fast path must too.
_LINE_ENDINGS = re.compile(r"\r\n?")


class Renderer:
    """One Jinja environment per project: macros loaded once, then models rendered one by one."""

    def __init__(self, config: ProjectConfig, macro_files: Iterable[MacroFile]) -> None:
        self.config = config
        self.target = TargetInfo(
            name=config.target_name,
            schema=config.schema,
            database=config.database,
            threads=config.threads,
            profile_name=config.name,
        )
        self._sources: dict[str, tuple[str, Path]] = {}
        self._state = _RenderState(name="", incremental=False)
        self._functions = self._context_functions()
        self._macro_files = list(macro_files)
        self._env: Any = None
        self._macro_origin: dict[str, Path] = {}

    @property
    def env(self) -> Any:
        """The Jinja environment with every macro loaded, built on first need.

        Models on the fast path and a warm compile never need it, so they skip importing Jinja and
        compiling the macro files.
        """
        if self._env is None:
            import jinja2

            _enable_macro_return()
            self._env = jinja2.Environment(
                loader=jinja2.FunctionLoader(self._load_source),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
                cache_size=0,
            )
            self._env.globals.update(self._functions)
            self._load_macros(self._macro_files)
        return self._env

    @property
    def macro_origin(self) -> dict[str, Path]:
        self.env  # noqa: B018 - loads the macros
        return self._macro_origin

    def has_project_macro(self, name: str) -> bool:
        """Whether the project (not wfsql's bundled macros) defines a macro, without loading Jinja."""
        pattern = re.compile(r"\{%-?\s*macro\s+" + re.escape(name) + r"\s*\(")
        return any(not f.bundled and pattern.search(f.text) for f in self._macro_files)

    # ----------------------------------------------------------------------------------- context

    def _context_functions(self) -> dict[str, Any]:
        def ref(*args: str, **_: Any) -> RefRelation:
            if not args:
                raise WfsqlError("ref() needs a model name")
            name = args[-1]  # ref('package', 'model') and ref('model') both name the model last
            self._state.refs.append(name)
            return self._ref_relation(name)

        def source(source_name: str, table_name: str) -> RefRelation:
            self._state.sources.append((source_name, table_name))
            return RefRelation(table_name, source_placeholder(source_name, table_name))

        def var(name: str, *default: Any) -> Any:
            if name in self.config.vars:
                return self.config.vars[name]
            if default:
                return default[0]
            raise WfsqlError(
                f"required var {name!r} is not set",
                hint=f"set it under `vars:` in {self.config.config_path.name} or pass --vars '{{{name}: ...}}'",
            )

        def env_var(name: str, *default: Any) -> Any:
            value = os.environ.get(name)
            self._state.env_vars[name] = value
            if value is not None:
                return value
            if default:
                return default[0]
            raise WfsqlError(
                f"environment variable {name!r} is not set", hint=f"export {name}=... or give env_var a default"
            )

        def is_incremental() -> bool:
            self._state.asked_incremental = True
            return self._state.incremental

        def this() -> RefRelation:
            return self._ref_relation(self._state.name)

        def run_query(*_: Any, **__: Any) -> Any:
            raise WfsqlError(
                "run_query() needs the database, but wfsql compiles without one",
                hint="compute the value in SQL instead (a CTE or a join), or pass it with --vars",
            )

        def macro_return(value: Any) -> None:
            raise MacroReturn(value)

        def scrub_pii(column: str) -> str:
            """SQL that replaces e-mails, phone numbers, keys and tokens in `column` by placeholders."""
            from wfsql.conversations.pii import scrub_pii_sql

            return scrub_pii_sql(column)

        def is_english(column: str, threshold: float | None = None) -> str:
            """SQL predicate: is the text in `column` English (a script and stop-word heuristic, no model)."""
            from wfsql.conversations.language import is_english_sql

            return is_english_sql(column) if threshold is None else is_english_sql(column, threshold)

        return {
            "ref": ref,
            "source": source,
            "var": var,
            "env_var": env_var,
            "is_incremental": is_incremental,
            "target": self.target,
            "run_query": run_query,
            "return": macro_return,
            "scrub_pii": scrub_pii,
            "is_english": is_english,
            "log": lambda *a, **k: "",
            "print": lambda *a, **k: "",
            "tojson": lambda value, **k: json.dumps(value, default=str, **k),
            "fromjson": lambda text, default=None: json.loads(text) if text else default,
            "toyaml": lambda value, **k: yaml.safe_dump(value, **k),
            "fromyaml": lambda text, default=None: yaml.safe_load(text) if text else default,
            "zip": zip,
            "set": set,
            "modules": {"datetime": datetime, "re": re, "json": json},
            "exceptions": _Exceptions(),
            "adapter": _Adapter(self),
            "execute": True,
            "flags": {},
            "project_name": self.config.name,
            "run_started_at": datetime.datetime.now(datetime.UTC),
            "invocation_id": "",
            "_this": this,
        }

    def _ref_relation(self, name: str) -> RefRelation:
        return RefRelation(name, ref_placeholder(name), schema=schema_placeholder(name), database=self._catalog)

    @cached_property
    def _catalog(self) -> str:
        database = self.config.database
        return "memory" if database == ":memory:" else Path(database).stem

    # ------------------------------------------------------------------------------------ macros

    def _load_source(self, name: str) -> tuple[str, str, Callable[[], bool]] | None:
        entry = self._sources.get(name)
        if entry is None:
            return None
        text, path = entry
        return text, str(path), lambda: True

    def _load_macros(self, macro_files: Iterable[MacroFile]) -> None:
        import jinja2.runtime

        """Later files win over earlier ones (bundled macros come first, the project's override them)."""
        project_origin: dict[str, Path] = {}
        for macro_file in macro_files:
            path, text, bundled = macro_file.path, macro_file.text, macro_file.bundled
            template = self._template(path, text, kind="macro")
            try:
                module = template.make_module()
            except Exception as exc:
                raise _render_error(exc, path, text, node=None) from None
            for name, value in vars(module).items():
                if not isinstance(value, jinja2.runtime.Macro):
                    continue
                if not bundled and name in project_origin:
                    raise JinjaRenderError(
                        f"macro {name!r} is defined twice: {project_origin[name]} and {path}",
                        location=Location(path),
                        hint="rename or delete one of them",
                    )
                if not bundled:
                    project_origin[name] = path
                self._env.globals[name] = value
                self._macro_origin[name] = path

    def _template(self, path: Path, text: str, *, kind: str) -> Any:
        import jinja2

        key = f"{kind}:{path}"
        if kind == "macro":
            text = _TEST_BLOCK.sub(r"{\1 macro test_\2(", _END_TEST.sub(r"{\1 endmacro \2}", text))
        self._sources[key] = (text, path)
        env = self._env if kind == "macro" else self.env
        try:
            return env.get_template(key)
        except jinja2.TemplateSyntaxError as exc:
            raise _render_error(exc, path, text, node=None) from None

    # ---------------------------------------------------------------------------------- rendering

    def render(self, name: str, path: Path | str, text: str, *, node: str | None = None) -> RenderResult:
        """Render one model/test file; try the static fast path first."""
        fast = self._render_fast(name, text)
        if fast is not None:
            return fast
        path = Path(path)
        first = self._render_jinja(name, path, text, incremental=False, node=node)
        if first.uses_is_incremental:
            second = self._render_jinja(name, path, text, incremental=True, node=node)
            first.incremental_sql = second.sql
            first.refs = list(dict.fromkeys([*first.refs, *second.refs]))
            first.sources = list(dict.fromkeys([*first.sources, *second.sources]))
        return first

    def render_string(self, text: str, **context: Any) -> str:
        """Render a small template (a test, a hook) with extra context; no fast path."""
        self._state = _RenderState(name=str(context.get("model_name", "")), incremental=False)
        return self.env.from_string(text).render(**context)

    def _render_jinja(self, name: str, path: Path, text: str, *, incremental: bool, node: str | None) -> RenderResult:
        self._state = state = _RenderState(name=name, incremental=incremental)
        template = self._template(path, text, kind="node")
        try:
            sql = template.render(config=_ConfigCall(state), this=self._ref_relation(name))
        except Exception as exc:
            raise _render_error(exc, path, text, node=node) from None
        return RenderResult(
            sql=sql,
            refs=list(dict.fromkeys(state.refs)),
            sources=list(dict.fromkeys(state.sources)),
            config=state.config,
            env_vars=state.env_vars,
            uses_is_incremental=state.asked_incremental,
        )

    def _render_fast(self, name: str, text: str) -> RenderResult | None:
        """Substitute plain literal calls without Jinja; None when the file needs real Jinja."""
        if "\r" in text:
            text = _LINE_ENDINGS.sub("\n", text)
        calls = list(_FAST_CALL.finditer(text))
        remainder = _FAST_CALL.sub("", text)
        if _ANY_JINJA.search(remainder) or "}}" in remainder:
            return None
        if not calls:
            return RenderResult(sql=text)
        state = _RenderState(name=name, incremental=False)
        self._state = state
        pieces: list[str] = []
        position = 0
        for match in calls:
            parsed = _literal_call(match.group(1))
            if parsed is None:
                return None
            function, args, kwargs = parsed
            if function == "ref":
                if not args or kwargs.keys() - {"version", "v"}:
                    return None
                output = str(self._functions["ref"](*args))
            elif function == "source":
                if len(args) != 2 or kwargs:
                    return None
                output = str(self._functions["source"](*args))
            elif function == "config":
                if args:
                    return None
                _ConfigCall(state)(**kwargs)
                output = ""
            else:  # var
                if kwargs or not 1 <= len(args) <= 2:
                    return None
                try:
                    value = self._functions["var"](*args)
                except WfsqlError:
                    return None  # let Jinja raise it with a line number
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    return None  # Jinja's str() of lists/bools/None differs; keep exact semantics
                output = str(value)
            pieces.append(text[position : match.start()])
            pieces.append(output)
            position = match.end()
        pieces.append(text[position:])
        return RenderResult(
            sql="".join(pieces),
            refs=list(dict.fromkeys(state.refs)),
            sources=list(dict.fromkeys(state.sources)),
            config=state.config,
        )


_SIMPLE_REF = re.compile(r"""ref\(\s*(['"])(\w+)\1\s*\)$""")
_SIMPLE_SOURCE = re.compile(r"""source\(\s*(['"])(\w+)\1\s*,\s*(['"])(\w+)\3\s*\)$""")
# config(materialized='table', schema="x"): keyword arguments whose values are plain quoted words.
_SIMPLE_CONFIG = re.compile(
    r"""config\(\s*(\w+\s*=\s*(['"])[\w.+-]*\2\s*(?:,\s*\w+\s*=\s*(['"])[\w.+-]*\3\s*)*),?\s*\)$"""
)
_SIMPLE_KWARG = re.compile(r"""(\w+)\s*=\s*(['"])([\w.+-]*)\2""")


def _literal_call(expression: str) -> tuple[str, list[Any], dict[str, Any]] | None:
    """(function, args, kwargs) of a call whose arguments are all literals, else None."""
    simple = _SIMPLE_REF.match(expression)
    if simple:
        return "ref", [simple.group(2)], {}
    simple = _SIMPLE_SOURCE.match(expression)
    if simple:
        return "source", [simple.group(2), simple.group(4)], {}
    simple = _SIMPLE_CONFIG.match(expression)
    if simple:
        pairs = _SIMPLE_KWARG.findall(simple.group(1))
        kwargs = {key: value for key, _, value in pairs}
        if len(kwargs) == len(pairs):  # a repeated keyword is an error: leave it to Jinja
            return "config", [], kwargs
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        return None
    try:
        args = [ast.literal_eval(arg) for arg in tree.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords if kw.arg is not None}
    except (ValueError, SyntaxError, TypeError):
        return None
    if any(kw.arg is None for kw in tree.keywords):
        return None
    # Jinja literals differ from Python's for true/false/none names: those are not literals in ast.
    return tree.func.id, args, kwargs


def _template_line(exc: BaseException, path: Path) -> int | None:
    import jinja2

    lineno = getattr(exc, "lineno", None)
    if isinstance(exc, jinja2.TemplateSyntaxError) and lineno:
        return int(lineno)
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == str(path) and frame.lineno:
            return frame.lineno
    return None


def _render_error(exc: BaseException, path: Path, text: str, *, node: str | None) -> WfsqlError:
    import jinja2

    line = _template_line(exc, path)
    if isinstance(exc, WfsqlError):
        exc.location = exc.location or Location(path, line)
        exc.node = exc.node or node
        if line and not exc.snippet:
            exc.snippet = source_snippet(text, line)
        return exc
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, jinja2.UndefinedError):
        hint = "check the spelling; variables come from var(), macros from macros/ folders"
    elif isinstance(exc, jinja2.TemplateSyntaxError):
        hint = "check the matching {% ... %} / {% end... %} tags and the {{ }} braces"
    else:
        hint = None
    return JinjaRenderError(
        f"{type(exc).__name__}: {message}",
        location=Location(path, line),
        node=node,
        hint=hint,
        snippet=source_snippet(text, line) if line else None,
    )
