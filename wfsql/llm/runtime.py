"""LLM calls inside SQL, run as set operations.

DuckDB calls a Python UDF chunk by chunk under the GIL, and a UDF must not query its own connection,
so a model whose SQL calls LLM functions is built in passes:

1. *collect*: the model's query runs with the functions recording their distinct argument tuples
   (and returning NULL);
2. the tuples are anti-joined with the persistent cache, and only the missing ones go to the backend,
   grouped by model and parameters, length-sorted, in batches that each commit to the cache;
3. repeat while a pass finds new tuples (one LLM call's result can feed another's input);
4. *resolve*: the real build runs with the functions reading answers from memory.

The SQL runs a few times; the model runs once per distinct input, ever.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from wfsql.adapter import DuckDBAdapter
from wfsql.errors import WfsqlError, did_you_mean
from wfsql.llm.backend import is_rejected
from wfsql.llm.cache import CacheRow, append, cache_key, ensure_cache_table, lookup
from wfsql.llm.embeddings import DEFAULT_EMBEDDER
from wfsql.llm.executor import Call
from wfsql.llm.functions import FUNCTIONS, ROLE_FALLBACK, ROLES, LLMFunction

MAX_PASSES = 8
_BUILD_IDS = itertools.count(1)
DEFAULT_MODEL = "default"


@dataclass(frozen=True)
class LLMSettings:
    """The project's `llm:` block: named models, which model serves each role, batching, errors."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    batch_size: int = 16
    on_error: str = "null"
    root: Path | None = None  # relative model paths resolve against the project folder
    executor: str = "local"  # where the calls run: local (this process) or ray (see wfsql/llm/executor.py)
    ray: Any = None  # RaySettings, from the `ray:` block

    @classmethod
    def parse(cls, raw: dict[str, Any], root: Path | None = None) -> LLMSettings:
        known = {"models", "roles", "batch_size", "on_error", "executor", "ray"}
        for key in raw:
            if key not in known:
                suggestion = did_you_mean(str(key), known)
                raise WfsqlError(
                    f"llm.{key}: unknown key" + (f"; {suggestion}" if suggestion else ""),
                    hint="the llm block takes models, roles, batch_size, on_error, executor, ray",
                )
        on_error = str(raw.get("on_error", "null"))
        if on_error not in ("null", "fail"):
            raise WfsqlError(f"llm.on_error must be 'null' or 'fail', not {on_error!r}")
        models = dict(raw.get("models") or {})
        roles = {str(k): str(v) for k, v in (raw.get("roles") or {}).items()}
        for role, model in roles.items():
            if model != DEFAULT_MODEL and model not in models:
                raise WfsqlError(
                    f"llm.roles.{role}: no model named {model!r} under llm.models",
                    hint=f"declare it, e.g. llm: {{models: {{{model}: {{source: ...}}}}}}",
                )
        if root is not None:
            for name, spec in list(models.items()):
                source = spec.get("source") if isinstance(spec, dict) else None
                if isinstance(source, str) and not Path(source).is_absolute() and (root / source).exists():
                    models[name] = {**spec, "source": str((root / source).resolve())}
        _check_model_settings(models)
        from wfsql.llm.executor import EXECUTORS, RaySettings

        executor = str(raw.get("executor", "local"))
        if executor not in EXECUTORS:
            raise WfsqlError(f"llm.executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
        return cls(
            models=models,
            roles=roles,
            batch_size=int(raw.get("batch_size", 16)),
            on_error=on_error,
            root=root,
            executor=executor,
            ray=RaySettings.parse(raw.get("ray")),
        )


@dataclass
class CallStats:
    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    known_failures: int = 0  # of `failures`: rejected answers kept from the cache, not recomputed
    skipped_by_limit: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0

    def describe(self) -> str:
        rate = f", {self.calls / self.seconds:.1f} calls/s" if self.calls and self.seconds else ""
        parts = [f"LLM: {self.calls} call(s){rate}", f"{self.cache_hits} cache hit(s)", f"{self.failures} failed"]
        if self.known_failures:
            parts.append(f"{self.known_failures} of them rejected before and kept (--llm-retry-failed reruns them)")
        if self.skipped_by_limit:
            parts.append(f"{self.skipped_by_limit} over --llm-limit")
        return ", ".join(parts)


class LLMRuntime:
    """One per command: turns model names into backends (loaded once, on first real call)."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        console: Any = None,
        limit: int | None = None,
        dry_run: bool = False,
        executor: str | None = None,
        retry_failed: bool = False,
    ) -> None:
        self.settings = settings
        self.console = console
        self.limit = limit
        self.dry_run = dry_run
        self.retry_failed = retry_failed  # also rerun rejected answers (`LLMResult.rejected`), not only errors
        self.executor_name = executor or settings.executor
        self._executor: Any = None
        if self.executor_name not in ("local", "ray"):
            suggestion = did_you_mean(self.executor_name, ["local", "ray"])
            raise WfsqlError(
                f"unknown executor {self.executor_name!r}" + (f"; {suggestion}" if suggestion else ""),
                hint="--executor takes local or ray",
            )
        if self.executor_name == "ray" and not dry_run:
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise WfsqlError("--executor ray needs Ray, which is not installed", hint="pip install 'wfsql[ray]'")
        self._backends: dict[str, Any] = {}
        # keys some model of this build is computing right now: another model that needs the same answer
        # (same prompt, model and options) waits for it instead of computing it a second time
        self._inflight: dict[str, threading.Event] = {}
        self._inflight_lock = threading.Lock()
        self._specs: dict[str, Any] = {}
        self._versions: dict[tuple[str, str | None], str] = {}
        self._model_ids: dict[str, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------- models

    def model_for(self, function: LLMFunction, requested: str | None, node_roles: dict[str, str]) -> str:
        """A call's model name: explicit `model :=` (a role or a model name), else the function's role."""
        name = requested or function.role
        for _ in range(3):
            if name in (DEFAULT_MODEL, DEFAULT_EMBEDDER) or name in self.settings.models:
                return name
            mapped = node_roles.get(name) or self.settings.roles.get(name) or ROLE_FALLBACK.get(name)
            if mapped is None and name == "embedder":
                return DEFAULT_EMBEDDER
            if mapped is None:
                # a role nobody mapped (`model := 'policy'` without llm.roles) is served by the default model
                if requested and name not in ROLES:
                    known = [*self.settings.models, *self.settings.roles]
                    suggestion = did_you_mean(requested, known)
                    raise WfsqlError(
                        f"{function.name}(model := {requested!r}): no such model or role"
                        + (f"; {suggestion}" if suggestion else "")
                    )
                return DEFAULT_MODEL
            name = mapped
        return name

    def spec(self, name: str) -> Any:
        with self._lock:
            if name not in self._specs:
                from wfsql.llm.models import default_model_spec, parse_model_config

                raw = self.settings.models.get(name)
                if raw is not None and raw.get("trained_from") is not None:  # a training target's latest model
                    from wfsql.training.registry import resolve_trained_model

                    raw = resolve_trained_model(name, raw, self.settings.root)
                if raw is None or raw.get("source") in (None, "default"):
                    base = default_model_spec()
                    self._specs[name] = (
                        base
                        if raw is None
                        else parse_model_config(
                            name,
                            {
                                **{k: v for k, v in raw.items() if k != "source"},
                                "source": base.source,
                                "gguf_file": base.gguf_file,
                            },
                        )
                    )
                else:
                    try:
                        self._specs[name] = parse_model_config(name, raw)
                    except ValueError as exc:
                        raise WfsqlError(
                            f"llm.models.{name}: {exc}", hint="see docs/llm.md for model settings"
                        ) from None
            return self._specs[name]

    def _is_embedder(self, name: str) -> bool:
        return name == DEFAULT_EMBEDDER or (self.settings.models.get(name) or {}).get("kind") == "embedding"

    def model_id(self, name: str) -> str:
        """The weights' identity (part of every cache key), computed once per build: it stats weight files."""
        model_id = self._model_ids.get(name)
        if model_id is None:
            model_id = self._model_ids[name] = self._model_id(name)
        return model_id

    def _model_id(self, name: str) -> str:
        if self._is_embedder(name):
            from wfsql.llm.embeddings import default_embedding_dir, embedding_model_id

            raw = self.settings.models.get(name) or {}
            source = raw.get("source")
            return embedding_model_id(Path(source) if source not in (None, "default") else default_embedding_dir())
        return str(self.spec(name).model_id)

    def backend(self, name: str) -> Any:
        if self._is_embedder(name):
            with self._lock:
                if name not in self._backends:
                    from wfsql.llm.embeddings import load_embedder

                    self._backends[name] = load_embedder(self.settings.models.get(name))
                return self._backends[name]
        spec = self.spec(name)
        with self._lock:
            if name not in self._backends:
                from wfsql.llm.transformers_backend import TransformersBackend

                self._backends[name] = TransformersBackend(spec)
            return self._backends[name]

    def claim(self, keys: Sequence[str]) -> tuple[list[str], dict[str, threading.Event]]:
        """Split keys into those the caller computes now and those another model is computing (with events)."""
        mine: list[str] = []
        theirs: dict[str, threading.Event] = {}
        with self._inflight_lock:
            for key in keys:
                event = self._inflight.get(key)
                if event is None:
                    self._inflight[key] = threading.Event()
                    mine.append(key)
                else:
                    theirs[key] = event
        return mine, theirs

    def release(self, keys: Sequence[str]) -> None:
        """The caller is done with these keys (answered or failed): wake the models waiting for them."""
        with self._inflight_lock:
            for key in keys:
                event = self._inflight.pop(key, None)
                if event is not None:
                    event.set()

    @property
    def executor(self) -> Any:
        """Where the calls run (`--executor` or `llm.executor`): built on first use."""
        with self._lock:
            if self._executor is None:
                from wfsql.llm.executor import make_executor

                self._executor = make_executor(self.executor_name, self.settings.ray)
            return self._executor

    def template_version(self, function: str, model: str | None = None) -> str:
        """The prompt template's version: part of every cache key, so a new prompt means new answers.

        For `feedback_signal` it also names the method the model runs (calibrated weights or rubric prompt).
        """
        key = (function, model)
        version = self._versions.get(key)  # asked once per row: the method lookup stats weight files
        if version is None:
            version = self._versions[key] = self._template_version(function, model)
        return version

    def _template_version(self, function: str, model: str | None) -> str:
        from wfsql.llm.backend import TEMPLATE_VERSIONS
        from wfsql.llm.models import CLASSIFIER_METHODS, ModelSpec

        if function == "feedback_signal" and model is not None and not self._is_embedder(model):
            method = self.spec(model).resolved_feedback_method()  # `auto` reads the weights' size on disk
            if method in CLASSIFIER_METHODS:
                from wfsql.llm.calibrated import classifier_for

                return classifier_for(method).cache_version
        kind = "feedback" if function == "feedback_signal" else function.removeprefix("llm_")
        version = str(TEMPLATE_VERSIONS.get(kind, "v1"))
        if function == "llm_extract" and model is not None and not self._is_embedder(model):
            # The model's max_new_tokens decides whether a JSON answer can finish: a different setting is a
            # different call. (The default leaves the key as it always was, so existing caches stay valid.)
            limit = self.spec(model).max_new_tokens
            if limit != ModelSpec.max_new_tokens:
                version += f";max_new_tokens={limit}"
        return version


class ModelCalls:
    """The LLM calls of one model build: UDFs on one cursor, switched from collect to resolve."""

    def __init__(
        self,
        runtime: LLMRuntime,
        adapter: DuckDBAdapter,
        node_name: str,
        node_llm: dict[str, Any],
        functions: Sequence[str],
    ) -> None:
        self.runtime = runtime
        self.adapter = adapter
        self.node_name = node_name
        self.node_roles = {str(k): str(v) for k, v in (node_llm or {}).items() if k not in ("on_error",)}
        self.on_error = str((node_llm or {}).get("on_error", runtime.settings.on_error))
        self.functions = [FUNCTIONS[name] for name in functions]
        self.mode = "collect"
        # UDFs live in DuckDB's global catalog (macros are per connection), so each build gets its own names.
        self.suffix = next(_BUILD_IDS)
        self.registered: list[str] = []
        self.pending: dict[str, Call] = {}
        self.values: dict[str, Any] = {}
        self.stats = CallStats()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------- registration

    def register(self) -> None:
        cursor = self.adapter.cursor()
        import duckdb

        for function in self.functions:
            udf_name = f"{function.udf_name}_{self.suffix}"
            with contextlib.suppress(duckdb.Error):
                cursor.remove_function(udf_name)
            positional = (*function.arguments, *function.optional)
            argument_types = [t for _, t in positional] + ["VARCHAR"] * len(function.options)
            # Arrow UDFs cannot return DuckDB's JSON type directly: return text, cast in the macro.
            is_json = function.return_type == "JSON"
            cursor.create_function(
                udf_name,
                self._udf(function),
                [duckdb.sqltype(t) for t in argument_types],
                duckdb.sqltype("VARCHAR" if is_json else function.return_type),
                type="arrow",
                null_handling="special",
                side_effects=True,
            )
            optional = [name for name, _ in function.optional] + list(function.options)
            parameters = [name for name, _ in function.arguments] + [f"{o} := NULL" for o in optional]
            names = [name for name, _ in positional] + list(function.options)
            call = f"{udf_name}({', '.join(names)})"
            self.registered.append(udf_name)
            body = f"cast({call} as JSON)" if is_json else call
            cursor.execute(f"create or replace temp macro {function.name}({', '.join(parameters)}) as {body}")

    def _udf(self, function: LLMFunction) -> Callable[..., Any]:
        import pyarrow as pa

        arrow_type = _arrow_type(function.return_type)
        n_args = len(function.arguments)
        n_row = n_args + len(function.optional)  # optional per-row arguments may be NULL

        def udf(*columns: Any) -> Any:
            rows = [column.to_pylist() for column in columns]
            out: list[Any] = []
            for index in range(len(rows[0]) if rows else 0):
                arguments = tuple(rows[a][index] for a in range(n_row))
                options = tuple(rows[a][index] for a in range(n_row, len(rows)))
                if any(value is None for value in arguments[:n_args]):
                    out.append(None)
                    continue
                call = self._call(function, arguments, options)
                if self.mode == "collect":
                    with self._lock:
                        self.pending.setdefault(call.key, call)
                    out.append(None)
                else:
                    out.append(_to_sql_value(function, self.values.get(call.key)))
            return pa.array(out, type=arrow_type)

        return _with_arity(udf, n_row + len(function.options))

    def _call(self, function: LLMFunction, arguments: tuple[Any, ...], options: tuple[Any, ...]) -> Call:
        option_map = dict(zip(function.options, options, strict=True))
        model = self.runtime.model_for(function, option_map.pop("model", None), self.node_roles)
        normalised = tuple(tuple(a) if isinstance(a, list) else a for a in arguments)
        option_values = tuple(option_map.get(o) for o in function.options if o != "model")
        key = cache_key(
            function.name,
            self.runtime.model_id(model),
            self.runtime.template_version(function.name, model),
            normalised,
            option_values,
        )
        return Call(key, function.name, model, normalised, option_values)

    def close(self) -> None:
        """Drop this build's UDFs; the temp macros go with the connection's next registration."""
        import duckdb

        cursor = self.adapter.cursor()
        for name in self.registered:
            with contextlib.suppress(duckdb.Error):
                cursor.remove_function(name)
        self.registered.clear()

    # ---------------------------------------------------------------------------- execution

    def prepare(self, sql: str) -> CallStats:
        """Collect and compute every missing answer, then switch to resolve mode."""
        ensure_cache_table(self.adapter)
        self.register()
        cursor = self.adapter.cursor()
        seen: set[str] = set()
        for _ in range(MAX_PASSES):
            self.mode = "collect"
            self.pending.clear()
            cursor.execute(f"create or replace temp table __wfsql_collect as select * from ({sql}) as q")
            cursor.execute("drop table __wfsql_collect")
            new_keys = [k for k in self.pending if k not in seen]
            if not new_keys:
                break
            seen.update(new_keys)
            cached = lookup(self.adapter, new_keys)
            missing = []
            for key in new_keys:
                row = cached.get(key)
                if row is not None and row.status == "ok":
                    self.values[key] = row.value
                    self.stats.cache_hits += 1
                elif row is not None and self._final(row):
                    self.stats.failures += 1
                    self.stats.known_failures += 1
                else:
                    missing.append(self.pending[key])
            if self.runtime.limit is not None:
                allowed = max(0, self.runtime.limit - self.stats.calls)
                self.stats.skipped_by_limit += max(0, len(missing) - allowed)
                missing = missing[:allowed]
            if self.runtime.dry_run:
                self.stats.calls += len(missing)
                self.stats.prompt_tokens += sum(_rough_tokens(c.arguments) for c in missing)
                break
            self._infer_shared(missing)
        self.mode = "resolve"
        if self.on_error == "fail" and self.stats.failures and not self.runtime.dry_run:
            kept = " (--llm-retry-failed reruns the ones rejected before)" if self.stats.known_failures else ""
            raise WfsqlError(
                f"{self.stats.failures} LLM call(s) failed in model {self.node_name} and on_error is 'fail'",
                hint=f"see the status and error columns of _wfsql.llm_cache, or set on_error: null{kept}",
            )
        return self.stats

    def _infer_shared(self, missing: list[Call]) -> None:
        """Compute the missing calls, except those another model of this build is already computing:
        wait for those and read them from the cache (two models with the same prompt pay for it once)."""
        mine, theirs = self.runtime.claim([call.key for call in missing])
        claimed = set(mine)
        try:
            self._infer([call for call in missing if call.key in claimed])
        finally:
            self.runtime.release(mine)
        if not theirs:
            return
        for event in theirs.values():
            event.wait()
        shared = lookup(self.adapter, list(theirs))
        redo = []
        for key in theirs:
            row = shared.get(key)
            if row is not None and row.status == "ok":
                self.values[key] = row.value
                self.stats.cache_hits += 1
            elif row is not None and is_rejected(row.status, row.error):  # just rejected in this build: final
                self.stats.failures += 1
            else:  # the other model failed on it: try once more here, recording this model's own status row
                redo.append(self.pending[key])
        self._infer(redo)

    def _final(self, row: Any) -> bool:
        """A cached failure to keep rather than recompute: a rejected answer, unless --llm-retry-failed."""
        return not self.runtime.retry_failed and is_rejected(row.status, row.error)

    def _infer(self, calls: list[Call]) -> None:
        """Run the missing calls on the executor (local or Ray); write each finished batch to the cache."""
        from wfsql.llm.executor import Batch

        executor = self.runtime.executor
        groups: dict[tuple[Any, ...], list[Call]] = {}
        for call in calls:
            groups.setdefault((call.function, call.model, call.options, _group_extra(call)), []).append(call)
        batch_size = executor.batch_size(self.runtime.settings)
        batches: list[Batch] = []
        for (function, model, options, _), members in groups.items():
            members.sort(key=lambda c: sum(len(str(a)) for a in c.arguments))
            for start in range(0, len(members), batch_size):
                batches.append(Batch(function, model, options, tuple(members[start : start + batch_size])))
        wanted = {call.key: call for call in calls}
        done: set[str] = set()
        total = len(calls)
        console = self.runtime.console
        progress = console.progress(f"{self.node_name}: LLM", total) if console and total else None
        advance = progress.__enter__() if progress else (lambda n=1: None)
        try:
            started = time.perf_counter()
            for results in executor.run(self.runtime, batches):
                self.stats.seconds += time.perf_counter() - started
                rows = []
                for key, result in results:
                    # Ray delivers at least once: a retried batch may come back twice.
                    if key in done or key not in wanted:
                        continue
                    done.add(key)
                    call = wanted[key]
                    function = call.function
                    ok = result.status == "ok"
                    value = _cache_value(function, result) if ok else None
                    if ok:
                        self.values[call.key] = value
                    else:
                        self.stats.failures += 1
                    self.stats.calls += 1
                    self.stats.prompt_tokens += int(result.prompt_tokens or 0)
                    rows.append(
                        CacheRow(
                            call.key,
                            function,
                            self.runtime.model_id(call.model),
                            self.runtime.template_version(function, call.model),
                            list(call.arguments),
                            list(call.options),
                            value,
                            result.status,
                            result.error,
                            float(result.latency_ms or 0.0),
                            int(result.prompt_tokens or 0),
                            int(result.completion_tokens or 0),
                            result.probability,
                            self.node_name,
                        )
                    )
                append(self.adapter, rows)
                _die_here_for_tests(len(rows))
                advance(len(rows))
                started = time.perf_counter()
        finally:
            if progress:
                progress.__exit__(None, None, None)


def _check_model_settings(models: dict[str, Any]) -> None:
    """Every generative model's settings, validated when the project is read rather than inside the first
    UDF call that needs the model (where DuckDB would wrap the message in its own error)."""
    from wfsql.llm.models import parse_model_config

    for name, raw in models.items():
        if isinstance(raw, dict) and (raw.get("kind") == "embedding" or raw.get("trained_from") is not None):
            continue  # embedders and trained models have their own settings, checked where they resolve
        try:
            parse_model_config(str(name), {**raw, "source": raw.get("source") or "default"} if isinstance(raw, dict)
                               else raw)
        except ValueError as exc:
            raise WfsqlError(
                f"llm.models.{name}: {exc}", hint="fix it in the project file's llm: block; see docs/llm.md"
            ) from None


KILL_AFTER_ROWS_ENV = "WFSQL_TEST_KILL_AFTER_CACHED_ROWS"
"""Test hook: SIGKILL this process once it has committed at least this many answers to the cache."""
_cached_rows_this_process = 0


def _die_here_for_tests(committed: int) -> None:
    """A real kill at a known point, so tests can check that a killed build resumes without redoing work."""
    global _cached_rows_this_process
    _cached_rows_this_process += committed
    limit = os.environ.get(KILL_AFTER_ROWS_ENV)
    if limit and _cached_rows_this_process >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def _with_arity(function: Callable[..., Any], arity: int) -> Callable[..., Any]:
    """DuckDB reads a UDF's parameter count from its signature, so `*args` will not do."""
    wrappers: dict[int, Callable[..., Any]] = {
        1: lambda a: function(a),
        2: lambda a, b: function(a, b),
        3: lambda a, b, c: function(a, b, c),
        4: lambda a, b, c, d: function(a, b, c, d),
        5: lambda a, b, c, d, e: function(a, b, c, d, e),
    }
    return wrappers[arity]


def _group_extra(call: Call) -> Any:
    """Calls batch together only when they share the non-text arguments (labels, schema)."""
    if call.function in ("llm_classify", "llm_extract"):
        return call.arguments[1:]
    return ()


def _dispatch(backend: Any, function: str, calls: list[Call], options: tuple[Any, ...]) -> list[Any]:
    if function == "llm_classify":
        labels = list(calls[0].arguments[1])
        return backend.classify([c.arguments[0] for c in calls], labels, instruction=options[0])
    if function == "llm_extract":
        schema = orjson.loads(calls[0].arguments[1])
        return backend.extract([c.arguments[0] for c in calls], schema, instruction=options[0])
    if function == "llm_generate":
        settings = orjson.loads(options[0]) if options and options[0] else {}
        return backend.generate(
            [c.arguments[0] for c in calls],
            system=settings.get("system"),
            max_new_tokens=int(settings.get("max_tokens", settings.get("max_new_tokens", 256))),
            temperature=float(settings.get("temperature", 0.0)),
            seed=settings.get("seed"),
            stop=settings.get("stop"),
        )
    if function == "llm_embed":
        return backend.embed([c.arguments[0] for c in calls])
    if function == "llm_judge":
        from wfsql.llm.judge import JudgeInput

        return backend.judge([JudgeInput(*c.arguments) for c in calls])
    from wfsql.llm.backend import FeedbackInput

    return backend.feedback([FeedbackInput(*c.arguments) for c in calls])


def _cache_value(function: str, result: Any) -> Any:
    if function == "llm_classify":
        return {"label": result.value, "probability": result.probability}
    return result.value


def _to_sql_value(function: LLMFunction, value: Any) -> Any:
    if value is None:
        return None
    if function.return_type == "JSON":
        return orjson.dumps(value).decode()
    return value


def _arrow_type(duckdb_type: str) -> Any:
    import pyarrow as pa

    if duckdb_type in ("VARCHAR", "JSON"):
        return pa.string()
    if duckdb_type == "FLOAT[]":
        return pa.list_(pa.float32())
    if duckdb_type.startswith("STRUCT(label"):
        return pa.struct([("label", pa.string()), ("probability", pa.float64())])
    if duckdb_type.startswith("STRUCT(verdict"):
        return pa.struct(
            [
                ("verdict", pa.string()),
                ("probability", pa.float64()),
                ("score", pa.float64()),
                ("probabilities", pa.list_(pa.float64())),
            ]
        )
    return pa.struct(
        [
            ("sat", pa.bool_()),
            ("dsat", pa.bool_()),
            ("sat_categories", pa.list_(pa.string())),
            ("dsat_categories", pa.list_(pa.string())),
        ]
    )


def _rough_tokens(arguments: tuple[Any, ...]) -> int:
    return sum(len(str(a)) for a in arguments) // 4
