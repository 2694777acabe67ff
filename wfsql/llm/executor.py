"""Where the LLM calls of a model build run: in this process (`local`) or on a Ray cluster (`ray`).

The driver (`ModelCalls._infer` in runtime.py) computes the distinct calls the cache lacks, cuts them into
batches (grouped by function, model and options, length-sorted) and hands the batches to an executor. The
executor runs them and yields each finished batch as `(cache key, LLMResult)` pairs; the driver writes
every yielded batch to the cache in its own transaction. Only the driver writes the cache, so a killed job
keeps every batch that came back, and the next run asks only for the rest.

- `LocalExecutor` runs the batches one after the other on the backends of this process (what wfsql always
  did).
- `RayExecutor` hands the batches to Ray Data as an Arrow table, one block per batch, and maps them with a
  pool of actors (`replicas`) that each build the same backend from the same model spec once, then answer
  batch after batch. Results stream back as batches finish. A batch whose actor dies is retried by Ray on
  a restarted actor; Ray's delivery is at-least-once, so the driver drops keys it already has.

Both executors build identical batches and run them through `run_batch`, so with greedy decoding they give
the same answers for the same inputs (the batch composition, which decides the padding, is the same).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from wfsql.errors import WfsqlError, did_you_mean

if TYPE_CHECKING:
    from wfsql.llm.backend import LLMResult
    from wfsql.llm.runtime import LLMRuntime, LLMSettings

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = "install the extra: pip install 'wfsql[ray]'"
# Test hooks, read on the driver and handed to the actors (their environment is the cluster's, not ours):
DIE_ONCE_ENV = "WFSQL_RAY_TEST_DIE_ONCE"  # a marker path: the first actor to see no marker creates it and dies
RAISE_ON_ENV = "WFSQL_RAY_TEST_RAISE_ON"  # a substring: a batch holding an argument with it raises in the actor


@dataclass(frozen=True)
class Call:
    """One distinct LLM call: its cache key, and what the backend needs to answer it."""

    key: str
    function: str
    model: str
    arguments: tuple[Any, ...]
    options: tuple[Any, ...]


@dataclass(frozen=True)
class Batch:
    """Calls that share function, model and options: one backend call."""

    function: str
    model: str
    options: tuple[Any, ...]
    calls: tuple[Any, ...]  # Call-like: key, function, model, arguments, options

    def split(self) -> tuple[Batch, Batch]:
        half = len(self.calls) // 2
        return (
            Batch(self.function, self.model, self.options, self.calls[:half]),
            Batch(self.function, self.model, self.options, self.calls[half:]),
        )


def warm(backend: Any, function: str | None = None) -> None:
    """Load a backend's model now, so that a model that cannot load fails the job, not every row.

    With `function`, only when the backend needs its model for it (`needs_model`; e.g. the calibrated
    feedback classifier needs none)."""
    needs_model = getattr(backend, "needs_model", None)
    if function is None or needs_model is None or needs_model(function):
        getattr(backend, "loaded", None)


def run_batch(runtime: LLMRuntime, batch: Batch) -> list[LLMResult]:
    """One result per call, in order. An exception the backend raises (its contract says bad items never
    do, but a bug might) is isolated by splitting the batch in halves: the failing call becomes an error
    result and the others keep their answers."""
    backend = runtime.backend(batch.model)
    warm(backend, batch.function)
    return _isolated(backend, batch)


def _isolated(backend: Any, batch: Batch) -> list[LLMResult]:
    from wfsql.llm.backend import LLMResult
    from wfsql.llm.runtime import _dispatch

    try:
        results = list(_dispatch(backend, batch.function, list(batch.calls), batch.options))
        if len(results) != len(batch.calls):
            raise RuntimeError(f"the backend returned {len(results)} results for {len(batch.calls)} inputs")
        return results
    except Exception as exc:
        if len(batch.calls) == 1:
            return [LLMResult.failure(f"{type(exc).__name__}: {exc}")]
        first, second = batch.split()
        return _isolated(backend, first) + _isolated(backend, second)


class Executor(Protocol):
    """Runs batches; yields each finished batch's `(key, result)` pairs, in any order, possibly twice."""

    name: str

    def batch_size(self, settings: LLMSettings) -> int: ...

    def run(self, runtime: LLMRuntime, batches: Sequence[Batch]) -> Iterator[list[tuple[str, LLMResult]]]: ...


class LocalExecutor:
    """The batches one after the other, on this process's backends."""

    name = "local"

    def batch_size(self, settings: LLMSettings) -> int:
        return max(1, settings.batch_size)

    def run(self, runtime: LLMRuntime, batches: Sequence[Batch]) -> Iterator[list[tuple[str, LLMResult]]]:
        for batch in batches:
            results = run_batch(runtime, batch)
            yield [(call.key, result) for call, result in zip(batch.calls, results, strict=True)]


# ------------------------------------------------------------------------------------------- ray


_RAY_KEYS = {
    "address": (str, type(None)),
    "replicas": int,
    "cpus_per_replica": (int, float),
    "gpus_per_replica": (int, float),
    "batch_size": (int, type(None)),
    "threads_per_replica": (int, type(None)),
    "num_cpus": (int, type(None)),
    "max_task_retries": (int, type(None)),
    "runtime_env": (dict, type(None)),
}


@dataclass(frozen=True)
class RaySettings:
    """The `llm.ray` block of the project file.

    address: unset = `RAY_ADDRESS` when set (as under `ray job submit`), else a private local Ray started on
      this machine; `auto` = the cluster running here; `host:6379` or `ray://host:10001` = that cluster.
    replicas: actors, each holding one copy of the model. cpus_per_replica / gpus_per_replica: what Ray
      reserves for each. batch_size: rows per backend call on a replica (default: llm.batch_size; equal
      batch sizes give the local executor's answers exactly). threads_per_replica: torch threads (default:
      this machine's cores / replicas for a local Ray, else the replica's CPUs). num_cpus: logical CPUs of a
      local Ray (default max(4, 2 x cores): an actor pool that takes every CPU starves Ray Data's other
      tasks and hangs). max_task_retries: retries of a batch whose actor died (default: until it succeeds).
      runtime_env: handed to `ray.init` when connecting to a cluster.
    """

    address: str | None = None
    replicas: int = 1
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0
    batch_size: int | None = None
    threads_per_replica: int | None = None
    num_cpus: int | None = None
    max_task_retries: int | None = None
    runtime_env: dict[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def parse(cls, raw: Any) -> RaySettings:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise WfsqlError("llm.ray must be a mapping", hint="e.g. llm: {ray: {replicas: 2, gpus_per_replica: 1}}")
        for key, value in raw.items():
            if key not in _RAY_KEYS:
                suggestion = did_you_mean(str(key), list(_RAY_KEYS))
                raise WfsqlError(
                    f"llm.ray.{key}: unknown key" + (f"; {suggestion}" if suggestion else ""),
                    hint=f"the ray block takes {', '.join(_RAY_KEYS)}",
                )
            expected = _RAY_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, expected):
                names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
                raise WfsqlError(f"llm.ray.{key} must be {names.replace('NoneType', 'null')}, not {value!r}")
        settings = cls(**raw)
        if settings.replicas < 1:
            raise WfsqlError("llm.ray.replicas must be >= 1")
        if settings.batch_size is not None and settings.batch_size < 1:
            raise WfsqlError("llm.ray.batch_size must be >= 1 (or null for llm.batch_size)")
        if settings.cpus_per_replica < 0 or settings.gpus_per_replica < 0:
            raise WfsqlError("llm.ray.cpus_per_replica and gpus_per_replica must be >= 0")
        return settings


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise WfsqlError("--executor ray needs Ray (ray[data])", hint=RAY_INSTALL_HINT) from None
    return ray


_INIT_LOCK = threading.Lock()


def ensure_ray(settings: RaySettings) -> bool:
    """Connect to (or start) Ray unless this process already did; True when this call started it."""
    ray = import_ray()
    with _INIT_LOCK:
        if ray.is_initialized():
            return False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        address = settings.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, runtime_env=settings.runtime_env, logging_level=logging.WARNING)
        else:
            ray.init(
                address="local",
                num_cpus=settings.num_cpus or max(4, 2 * (os.cpu_count() or 1)),
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
        return True


def _is_local_cluster(ray: Any) -> bool:
    with contextlib.suppress(Exception):
        return len(ray.nodes()) == 1 and ray.util.get_node_ip_address() == ray.nodes()[0]["NodeManagerAddress"]
    return False


class RayExecutor:
    """The batches on a Ray Data actor pool; results stream back to the driver as batches finish."""

    name = "ray"

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings

    def batch_size(self, settings: LLMSettings) -> int:
        return max(1, self.settings.batch_size or settings.batch_size)

    def threads(self, ray: Any) -> int:
        if self.settings.threads_per_replica:
            return self.settings.threads_per_replica
        if _is_local_cluster(ray):
            return max(1, (os.cpu_count() or 1) // self.settings.replicas)
        return max(1, int(self.settings.cpus_per_replica))

    def run(self, runtime: LLMRuntime, batches: Sequence[Batch]) -> Iterator[list[tuple[str, LLMResult]]]:
        if not batches:
            return
        import pyarrow as pa

        ensure_ray(self.settings)
        ray = import_ray()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # One Arrow block per batch: one Ray task per backend call, so a dead actor costs one batch, the
        # pool balances batch by batch, and batches are exactly the local executor's.
        blocks = [
            pa.table(
                {
                    "function": [batch.function],
                    "model": [batch.model],
                    "options": [orjson.dumps(list(batch.options)).decode()],
                    "keys": [[call.key for call in batch.calls]],
                    "arguments": [[orjson.dumps(list(call.arguments)).decode() for call in batch.calls]],
                }
            )
            for batch in batches
        ]
        hooks = {name: os.environ[name] for name in (DIE_ONCE_ENV, RAISE_ON_ENV) if os.environ.get(name)}
        # unset: Ray Data's default, which retries a batch whose actor died until it succeeds
        retries = {} if self.settings.max_task_retries is None else {"max_task_retries": self.settings.max_task_retries}
        # from_blocks keeps the blocks as given and reads their metadata here; from_arrow would run a remote
        # task per block first (seconds on a cold cluster: a worker process has to start).
        source = getattr(ray.data, "from_blocks", None) or ray.data.from_arrow
        dataset = source(blocks).map_batches(
            RayReplica,
            fn_constructor_kwargs={
                "settings": runtime.settings,
                "work": sorted({(batch.model, batch.function) for batch in batches}),
                "threads": self.threads(ray),
                "hooks": hooks,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=min(self.settings.replicas, len(batches))),
            num_cpus=self.settings.cpus_per_replica,
            num_gpus=self.settings.gpus_per_replica or None,
            **retries,
        )
        try:
            for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
                yield _results_from_arrow(table)
        except WfsqlError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WfsqlError(
                f"the Ray job failed: {first}",
                hint="finished batches are in the cache; rerun to resume (see the Ray logs for the actor's error)",
            ) from exc


class RayReplica:
    """A Ray Data actor: builds the backends once (as the local executor would), then answers batches."""

    def __init__(
        self, settings: LLMSettings, work: list[tuple[str, str]], threads: int, hooks: dict[str, str]
    ) -> None:
        """`work`: the (model, function) pairs of the job; a model loads up front only if one of its functions needs
        it (not `feedback_signal` under the calibrated or lexical classifier)."""
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        torch.set_num_threads(max(1, threads))
        from wfsql.llm.runtime import LLMRuntime

        self.hooks = hooks
        self.runtime = LLMRuntime(settings)
        for model, function in work:
            warm(self.runtime.backend(model), function)

    def __call__(self, table: Any) -> Any:
        marker = self.hooks.get(DIE_ONCE_ENV)
        if marker:
            try:
                with open(marker, "x") as handle:  # exactly one actor ever wins the create
                    handle.write(str(os.getpid()))
                os._exit(17)  # a crash, not an exception: no cleanup, no result
            except FileExistsError:
                pass
        rows = table.to_pylist()
        out: list[tuple[str, LLMResult]] = []
        for row in rows:
            options = tuple(orjson.loads(row["options"]))
            calls = tuple(
                Call(key, row["function"], row["model"], tuple(_freeze(a) for a in orjson.loads(arguments)), options)
                for key, arguments in zip(row["keys"], row["arguments"], strict=True)
            )
            batch = Batch(row["function"], row["model"], options, calls)
            raise_on = self.hooks.get(RAISE_ON_ENV)
            if raise_on:
                results = _isolated(_Raising(self.runtime.backend(batch.model), raise_on), batch)
            else:
                results = run_batch(self.runtime, batch)
            out.extend((call.key, result) for call, result in zip(calls, results, strict=True))
        return _results_to_arrow(out)


class _Raising:
    """Test hook: the backend, except that any call holding `needle` raises (to test row isolation)."""

    def __init__(self, backend: Any, needle: str) -> None:
        self.backend = backend
        self.needle = needle

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.needle in orjson.dumps(args, default=lambda o: getattr(o, "__dict__", str(o))).decode():
                raise RuntimeError(f"test hook: an input holds {self.needle!r}")
            return method(*args, **kwargs)

        return call


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _results_to_arrow(pairs: list[tuple[str, LLMResult]]) -> Any:
    import pyarrow as pa

    return pa.table(
        {
            "key": pa.array([key for key, _ in pairs], pa.string()),
            "value": pa.array(
                [orjson.dumps(r.value).decode() if r.value is not None else None for _, r in pairs], pa.string()
            ),
            "status": pa.array([r.status for _, r in pairs], pa.string()),
            "error": pa.array([r.error for _, r in pairs], pa.string()),
            "latency_ms": pa.array([float(r.latency_ms or 0.0) for _, r in pairs], pa.float64()),
            "prompt_tokens": pa.array([int(r.prompt_tokens or 0) for _, r in pairs], pa.int64()),
            "completion_tokens": pa.array([int(r.completion_tokens or 0) for _, r in pairs], pa.int64()),
            "probability": pa.array([r.probability for _, r in pairs], pa.float64()),
            "probabilities": pa.array(
                [orjson.dumps(r.probabilities).decode() if r.probabilities is not None else None for _, r in pairs],
                pa.string(),
            ),
        }
    )


def _results_from_arrow(table: Any) -> list[tuple[str, LLMResult]]:
    from wfsql.llm.backend import LLMResult

    out = []
    for row in table.to_pylist():
        out.append(
            (
                row["key"],
                LLMResult(
                    orjson.loads(row["value"]) if row["value"] is not None else None,
                    row["status"],
                    row["error"],
                    row["latency_ms"],
                    row["prompt_tokens"],
                    row["completion_tokens"],
                    row["probability"],
                    orjson.loads(row["probabilities"]) if row["probabilities"] is not None else None,
                ),
            )
        )
    return out


def make_executor(name: str, raw_ray: Any = None) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(raw_ray if isinstance(raw_ray, RaySettings) else RaySettings.parse(raw_ray))
    suggestion = did_you_mean(name, list(EXECUTORS))
    raise WfsqlError(f"unknown executor {name!r}" + (f"; {suggestion}" if suggestion else ""), hint="use local or ray")


# ----------------------------------------------------------------------------------------- debug


def describe_cluster(settings: RaySettings | None = None, *, timeout: float = 30.0) -> str:
    """One line for `wfsql debug`: the Ray version and the cluster `--executor ray` would use."""
    from importlib import metadata

    try:
        version = metadata.version("ray")
    except metadata.PackageNotFoundError:
        return f"ray not installed ({RAY_INSTALL_HINT})"
    settings = settings or RaySettings()
    address = settings.address or os.environ.get("RAY_ADDRESS")
    if not address:
        cpus = settings.num_cpus or max(4, 2 * (os.cpu_count() or 1))
        return (
            f"ray {version}; no address (llm.ray.address or RAY_ADDRESS): --executor ray starts a local Ray "
            f"with {cpus} logical CPUs, {settings.replicas} replica(s)"
        )
    found: dict[str, Any] = {}

    def probe() -> None:
        try:
            import ray

            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            try:
                resources = ray.cluster_resources()
                alive = [n for n in ray.nodes() if n.get("Alive")]
                found["line"] = (
                    f"ray {version}; {address}: {len(alive)} node(s), {resources.get('CPU', 0):g} CPU(s), "
                    f"{resources.get('GPU', 0):g} GPU(s), {resources.get('memory', 0) / 2**30:.1f} GiB"
                )
            finally:
                ray.shutdown()
        except Exception as exc:
            found["line"] = f"ray {version}; {address}: cannot connect ({str(exc).strip().splitlines()[0]})"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return found.get("line", f"ray {version}; {address}: no answer in {timeout:.0f} s")
