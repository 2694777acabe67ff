"""Label scoring through SQL vs called directly: same turns, same process, alternating.

    python benchmarks/bench_llm_sql_path.py [--n 24]

Why: at 500 turns the first build through SQL (`bench_llm_cache.py`) took 1.33x the direct label-scoring time of
`bench_llm.py`, measured in another run. Here both paths score the same turns in one process (direct, SQL, direct,
SQL) and every scoring batch is recorded, so a difference in batching, padding or per-batch work would show.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm import load_turns, matmul_gflops
from bench_llm_cache import feedback_project

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.llm import transformers_backend
from wfsql.llm.models import default_model_spec

Backend = transformers_backend.TransformersBackend


def traced_batches() -> list[tuple[int, int, int, float]]:
    """Record (rows, padded width, real tokens, seconds) of every label-scoring forward batch from now on."""
    batches: list[tuple[int, int, int, float]] = []
    forward = Backend._forward_rows

    def traced(self: Backend, prefix: tuple[int, ...], rows: list, reads: list[list[int]]) -> list:
        started = time.perf_counter()
        out = forward(self, prefix, rows, reads)
        seconds = time.perf_counter() - started
        batches.append((len(rows), max(len(r.ids) for r in rows), sum(len(r.ids) for r in rows), seconds))
        return out

    Backend._forward_rows = traced  # type: ignore[method-assign]
    return batches


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=24)
    args = parser.parse_args()
    items = load_turns(args.n)
    batches = traced_batches()

    def direct() -> float:
        backend = Backend(dataclasses.replace(default_model_spec(), feedback_method="rubric"))
        backend.feedback(items[:2])  # warm: load the model, build the prefix cache
        batches.clear()
        started = time.perf_counter()
        backend.feedback(items)
        return time.perf_counter() - started

    def sql() -> float:
        project = Project.load(feedback_project(items), console=Console(quiet=True))
        batches.clear()
        started = time.perf_counter()
        assert project.run(RunOptions()).success
        return time.perf_counter() - started

    print(f"matmul float32 GFLOP/s before: {matmul_gflops():.0f}")
    print("| path | total s | forward s | batches | rows/batch | padded tokens | real tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, run in (("direct", direct), ("sql", sql), ("direct", direct), ("sql", sql)):
        total = run()
        print(f"| {name} | {total:.1f} | {sum(b[3] for b in batches):.1f} | {len(batches)} | "
              f"{sum(b[0] for b in batches) / max(len(batches), 1):.2f} | {sum(b[0] * b[1] for b in batches)} | "
              f"{sum(b[2] for b in batches)} |")
    print(f"matmul float32 GFLOP/s after: {matmul_gflops():.0f}")


if __name__ == "__main__":
    main()
