"""(d) of the LLM-functions issue: a fully cached rerun of a feedback model vs (a) naive per-row calls.

    python benchmarks/bench_llm_cache.py [--n 20 --naive-n 2]

In one run: (a) naive per-row outlines calls on a few real turns; then a wfsql project whose table
model calls feedback_signal() over N real turns is built once (computing and caching every answer)
and rebuilt with --full-refresh, where every answer comes from the DuckDB cache. Prints turns/s and
the ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
import pyarrow.parquet as pq
from bench_llm import load_turns, matmul_gflops, run_naive

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.llm.models import default_model_spec
from wfsql.llm.transformers_backend import TransformersBackend


def feedback_project(items: list) -> Path:
    """A throwaway wfsql project whose one table model calls `feedback_signal` (rubric label scoring) on `items`."""
    root = Path(tempfile.mkdtemp(prefix="wfsql_cache_bench_"))
    (root / "models").mkdir()
    (root / "wfsql_project.yml").write_text(
        "name: cache_bench\nthreads: 1\n"
        "llm:\n  models: {rubric: {source: default, feedback_method: rubric}}\n  roles: {classifier: rubric}\n"
    )
    pq.write_table(
        pa.table({
            "id": list(range(len(items))),
            "history": [i.history for i in items],
            "reply": [i.assistant_reply for i in items],
            "turn": [i.user_turn for i in items],
        }),
        root / "turns.parquet",
    )
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, feedback_signal(history, reply, turn) as signal from read_parquet('turns.parquet')"
    )
    return root


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--naive-n", type=int, default=2)
    args = parser.parse_args()
    items = load_turns(args.n)
    # the rubric prompt: the calibrated classifier that `auto` picks for this small model needs no LLM at all
    backend = TransformersBackend(dataclasses.replace(default_model_spec(), feedback_method="rubric"))
    samples = [matmul_gflops()]  # the machine may be shared: its speed is part of every figure here
    naive = run_naive(backend, items[: args.naive_n])
    samples.append(matmul_gflops())

    root = feedback_project(items)
    project = Project.load(root, console=Console(quiet=True))
    started = time.perf_counter()
    first = project.run(RunOptions())
    computed = time.perf_counter() - started
    samples.append(matmul_gflops())
    started = time.perf_counter()
    again = Project.load(root, console=Console(quiet=True)).run(RunOptions(full_refresh=True))
    cached = time.perf_counter() - started
    assert first.success and again.success
    assert "LLM: 0 call(s)" in again.results[0].message, again.results[0].message
    rate_naive = naive.turns / naive.seconds
    rate_cached = args.n / cached
    print(f"matmul float32 GFLOP/s sampled before (a), after (a) and after the first build: "
          f"{', '.join(f'{x:.0f}' for x in samples)}")
    print("| mode | turns | seconds | turns/s | vs (a) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| (a) naive per-row outlines calls | {naive.turns} | {naive.seconds:.1f} | {rate_naive:.3f} | 1 |")
    print(f"| first build (label scoring, computes and caches) | {args.n} | {computed:.1f} | "
          f"{args.n / computed:.3f} | {args.n / computed / rate_naive:.1f} |")
    print(f"| (d) fully cached rebuild (`--full-refresh`) | {args.n} | {cached:.2f} | {rate_cached:,.1f} | "
          f"{rate_cached / rate_naive:,.0f} |")


if __name__ == "__main__":
    main()
