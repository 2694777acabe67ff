"""Overhead of the Ray executor against the local executor, in one run, on the same inputs.

    python benchmarks/bench_llm_ray.py [--n 500 --max-chars 120 --replicas 1 --ray-first --json .bench/llm_ray.json]

N distinct real user turns (ShareGPT, the turns bench_llm.py uses, cut to --max-chars so that the run
takes minutes on 2 CPU cores) go through `llm_classify` on the default model (SmolLM2-135M-Instruct) in a
one-model wfsql project, built twice from an empty cache: once with the local executor, once with
`executor: ray` on a local Ray started with 4 logical CPUs. Both builds run in this process. Reported:
the wall time of each build, the ratio ray / local (with and without `ray.init`, which a running cluster
does not pay), and whether the two tables are identical.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from bench_llm import load_turns

from wfsql.api import Project, RunOptions
from wfsql.console import Console

LABELS = ["question", "request", "complaint", "praise", "other"]


def distinct_turns(n: int, max_chars: int) -> list[str]:
    seen: dict[str, None] = {}
    want = n
    while len(seen) < n:
        for item in load_turns(want):
            text = " ".join(item.user_turn.split())[:max_chars]
            if text:
                seen.setdefault(text, None)
        if len(seen) >= n or want > 20 * n:
            break
        want *= 2
    turns = list(seen)[:n]
    if len(turns) < n:
        raise SystemExit(f"only {len(turns)} distinct turns available")
    return turns


def make_project(root: Path, turns: list[str], executor: str, replicas: int, batch_size: int) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "wfsql_project.yml").write_text(
        f"name: ray_bench\nthreads: 1\nllm:\n  executor: {executor}\n  batch_size: {batch_size}\n"
        f"  ray: {{replicas: {replicas}}}\n"
    )
    pq.write_table(pa.table({"id": list(range(len(turns))), "turn": turns}), root / "turns.parquet")
    labels = ", ".join(f"'{label}'" for label in LABELS)
    (root / "models" / "kinds.sql").write_text(
        "{{ config(materialized='table') }}\n"
        f"select id, llm_classify(turn, [{labels}]) as kind from read_parquet('turns.parquet')"
    )
    return root


def build(root: Path) -> tuple[float, str]:
    project = Project.load(root, console=Console(quiet=True))
    started = time.perf_counter()
    results = project.run(RunOptions())
    seconds = time.perf_counter() - started
    assert results.success, [r.message for r in results.results]
    return seconds, results.results[0].message


def table(root: Path) -> list[tuple]:
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        return con.execute("select id, kind.label, round(kind.probability, 6) from kinds order by id").fetchall()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--max-chars", type=int, default=120)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ray-first", action="store_true", help="Build with Ray first (drift check).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    turns = distinct_turns(args.n, args.max_chars)
    work = Path(tempfile.mkdtemp(prefix="wfsql_ray_bench_"))
    local_root = make_project(work / "local", turns, "local", args.replicas, args.batch_size)
    ray_root = make_project(work / "ray", turns, "ray", args.replicas, args.batch_size)
    load_before = os.getloadavg()[0]

    def run_local() -> tuple[float, str]:
        seconds, message = build(local_root)
        print(f"local: {seconds:.1f} s ({message})", flush=True)
        return seconds, message

    def run_ray() -> tuple[float, float, str]:
        import ray

        started = time.perf_counter()
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
        init = time.perf_counter() - started
        print(f"ray.init: {init:.1f} s", flush=True)
        seconds, message = build(ray_root)
        print(f"ray: {seconds:.1f} s ({message})", flush=True)
        ray.shutdown()
        return init, seconds, message

    if args.ray_first:
        init_seconds, ray_seconds, _ = run_ray()
        local_seconds, _ = run_local()
    else:
        local_seconds, _ = run_local()
        init_seconds, ray_seconds, _ = run_ray()

    same = table(local_root) == table(ray_root)
    result = {
        "turns": len(turns),
        "order": "ray first" if args.ray_first else "local first",
        "max_chars": args.max_chars,
        "replicas": args.replicas,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "local_seconds": round(local_seconds, 2),
        "ray_init_seconds": round(init_seconds, 2),
        "ray_seconds": round(ray_seconds, 2),
        "ratio": round(ray_seconds / local_seconds, 3),
        "ratio_with_init": round((ray_seconds + init_seconds) / local_seconds, 3),
        "same_answers": same,
    }
    print("| executor | turns | seconds | turns/s | vs local |")
    print("|---|---:|---:|---:|---:|")
    print(f"| local | {len(turns)} | {local_seconds:.1f} | {len(turns) / local_seconds:.2f} | 1.00 |")
    print(
        f"| ray (local Ray, {args.replicas} replica(s), cluster already up) | {len(turns)} | {ray_seconds:.1f} | "
        f"{len(turns) / ray_seconds:.2f} | {result['ratio']:.2f} |"
    )
    print(
        f"| ray, counting `ray.init` ({init_seconds:.1f} s) | {len(turns)} | {ray_seconds + init_seconds:.1f} | "
        f"{len(turns) / (ray_seconds + init_seconds):.2f} | {result['ratio_with_init']:.2f} |"
    )
    print(f"same answers: {same}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
