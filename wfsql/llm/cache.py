"""The persistent LLM result cache: a table in the project's own DuckDB file.

Keyed by everything that determines an answer (function, model id + revision, prompt template
version, the arguments, decoding parameters, output schema), so reruns and incremental runs recompute
nothing they already have. Results are appended batch by batch and each batch commits: a run killed
half-way keeps every finished batch. The cache, not a rerun, is the source of truth.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from wfsql.adapter import STATE_SCHEMA, DuckDBAdapter

CACHE_TABLE = f'"{STATE_SCHEMA}"."llm_cache"'
# One writer at a time: two models building in parallel may answer the same input, and concurrent
# INSERT OR REPLACE of one key would be a write-write conflict in DuckDB.
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class CachedResult:
    key: str
    value: Any
    status: str
    error: str | None


@dataclass(frozen=True)
class CacheRow:
    key: str
    function: str
    model_id: str
    template_version: str
    arguments: Any
    params: Any
    value: Any
    status: str
    error: str | None
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int
    probability: float | None
    node: str | None


def cache_key(function: str, model_id: str, template_version: str, arguments: Sequence[Any], params: Any) -> str:
    payload = orjson.dumps([function, model_id, template_version, list(arguments), params], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(payload, digest_size=20).hexdigest()


def ensure_cache_table(adapter: DuckDBAdapter) -> None:
    adapter.ensure_schemas([STATE_SCHEMA])
    adapter.cursor().execute(
        f"create table if not exists {CACHE_TABLE} ("
        "key varchar primary key, function varchar, model_id varchar, template_version varchar, "
        "arguments json, params json, value json, status varchar, error varchar, latency_ms double, "
        "prompt_tokens integer, completion_tokens integer, probability double, node varchar, "
        "created_at timestamp default current_timestamp)"
    )


def lookup(adapter: DuckDBAdapter, keys: Iterable[str]) -> dict[str, CachedResult]:
    """Cached results for `keys` (an anti-join done in DuckDB, not row by row)."""
    key_list = list(dict.fromkeys(keys))
    if not key_list:
        return {}
    cursor = adapter.cursor()
    cursor.execute("create or replace temp table __wfsql_wanted (key varchar)")
    cursor.executemany("insert into __wfsql_wanted values (?)", [[k] for k in key_list])
    rows = cursor.execute(
        f"select c.key, c.value, c.status, c.error from {CACHE_TABLE} as c join __wfsql_wanted using (key)"
    ).fetchall()
    cursor.execute("drop table __wfsql_wanted")
    return {
        key: CachedResult(key, orjson.loads(value) if value is not None else None, status, error)
        for key, value, status, error in rows
    }


def append(adapter: DuckDBAdapter, rows: Sequence[CacheRow]) -> None:
    """One batch, one transaction: a killed run loses at most the batch in flight."""
    if not rows:
        return
    import pyarrow as pa

    table = pa.table(
        {
            "key": [r.key for r in rows],
            "function": [r.function for r in rows],
            "model_id": [r.model_id for r in rows],
            "template_version": [r.template_version for r in rows],
            "arguments": [orjson.dumps(r.arguments).decode() for r in rows],
            "params": [orjson.dumps(r.params, option=orjson.OPT_SORT_KEYS).decode() for r in rows],
            "value": [orjson.dumps(r.value).decode() if r.value is not None else None for r in rows],
            "status": [r.status for r in rows],
            "error": [r.error for r in rows],
            "latency_ms": [float(r.latency_ms) for r in rows],
            "prompt_tokens": [int(r.prompt_tokens) for r in rows],
            "completion_tokens": [int(r.completion_tokens) for r in rows],
            "probability": [r.probability for r in rows],
            "node": [r.node for r in rows],
        }
    )
    cursor = adapter.cursor()
    cursor.register("__wfsql_new_results", table)
    try:
        with _WRITE_LOCK, adapter.transaction() as transaction:
            transaction.execute(
                f"insert or replace into {CACHE_TABLE} (key, function, model_id, template_version, arguments, params, "
                "value, status, error, latency_ms, prompt_tokens, completion_tokens, probability, node) "
                "select key, function, model_id, template_version, arguments, params, value, status, error, "
                "latency_ms, prompt_tokens, completion_tokens, probability, node from __wfsql_new_results"
            )
    finally:
        cursor.unregister("__wfsql_new_results")
