"""Compile and run speed of the core, measured against a baseline in the same run.

    python benchmarks/bench_core.py [--sizes 100,1000,10000] [--run-size 1000] [--repeat 3] [--compile-repeat 7]

* compile: `wfsql compile` (the installed console script) as a subprocess, Python start-up and imports
  included, cold (no target/) and warm (unchanged project), on projects from ../shared/bench/gen_project.py.
* run: `wfsql run --threads 2` on a fresh database vs the floor: raw DuckDB executing the same
  CREATE VIEW statements in dependency order on one connection, timed in this run.
Prints a markdown table; the README quotes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT.parent / "shared" / "bench" / "gen_project.py"
WORK = ROOT / ".bench"
# The installed console script, what users type; `python -m wfsql.cli` where it is not installed.
_SCRIPT = shutil.which("wfsql", path=str(Path(sys.executable).parent))
WFSQL = [_SCRIPT] if _SCRIPT else [sys.executable, "-m", "wfsql.cli"]


def make_project(size: int) -> Path:
    folder = WORK / f"p{size}"
    if not (folder / "wfsql_project.yml").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, str(GENERATOR), str(folder), str(size), "wfsql"], check=True)
        (folder / "wfsql_project.yml").write_text("name: synth\nthreads: 2\n")
    return folder


# As an installed package runs: bytecode cached (pip compiles it at install time), whatever this shell says.
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=ENV)
    return time.perf_counter() - started


def compile_times(folder: Path, repeat: int) -> tuple[list[float], list[float]]:
    timed([*WFSQL, "compile", "--quiet"], folder)  # untimed: writes wfsql's own bytecode cache once
    cold, warm = [], []
    for _ in range(repeat):
        shutil.rmtree(folder / "target", ignore_errors=True)
        cold.append(timed([*WFSQL, "compile", "--quiet"], folder))
        warm.append(timed([*WFSQL, "compile", "--quiet"], folder))
    return cold, warm


def floor_time(folder: Path) -> float:
    """Raw DuckDB: the compiled CREATE VIEW statements in dependency order on one connection."""
    import orjson

    manifest = orjson.loads((folder / "target" / "manifest.json").read_bytes())
    order = _topological(manifest["parent_map"])
    statements = [
        f"create view {manifest['nodes'][uid]['relation_name']} as {manifest['nodes'][uid]['compiled_code']}"
        for uid in order
    ]
    database = folder / "target" / "floor.duckdb"
    database.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(database)) as connection:
        for statement in statements:
            connection.execute(statement)
    elapsed = time.perf_counter() - started
    database.unlink(missing_ok=True)
    return elapsed


def _topological(parents: dict[str, list[str]]) -> list[str]:
    done: set[str] = set()
    order: list[str] = []
    for start in parents:
        stack = [(start, False)]
        while stack:
            node, expanded = stack.pop()
            if node in done:
                continue
            if expanded:
                done.add(node)
                order.append(node)
                continue
            stack.append((node, True))
            stack.extend((p, False) for p in parents[node] if p not in done)
    return order


def run_time(folder: Path) -> float:
    database = folder / "target" / "wfsql.duckdb"
    database.unlink(missing_ok=True)
    return timed([*WFSQL, "run", "--threads", "2", "--quiet"], folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--run-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the run benchmark")
    parser.add_argument("--compile-repeat", type=int, default=7, help="cold/warm compile pairs per size <= 1,000")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)

    # Wall times on a 2-core VM jitter by tens of ms: report the median and the best of several runs.
    print("| models | compile cold (s), median / best | compile warm (s), median / best | per model cold (ms) |")
    print("|---:|---:|---:|---:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = make_project(size)
        colds, warms = compile_times(folder, args.compile_repeat if size <= 1000 else 1)
        cold, warm = statistics.median(colds), statistics.median(warms)
        print(
            f"| {size:,} | {cold:.2f} / {min(colds):.2f} | {warm:.2f} / {min(warms):.2f} | {cold / size * 1000:.2f} |"
        )

    folder = make_project(args.run_size)
    subprocess.run([*WFSQL, "compile", "--quiet"], cwd=folder, check=True)
    floors, runs, reruns = [], [], []
    for _ in range(args.repeat):
        floors.append(floor_time(folder))
        runs.append(run_time(folder))
        reruns.append(timed([*WFSQL, "run", "--quiet"], folder))
    floor, run, rerun = (statistics.median(x) for x in (floors, runs, reruns))
    print()
    print(f"| {args.run_size:,} views | seconds | ratio to floor |")
    print("|---|---:|---:|")
    print(f"| raw DuckDB, one connection, in order (floor) | {floor:.2f} | 1.00 |")
    print(f"| `wfsql run --threads 2`, fresh database | {run:.2f} | {run / floor:.2f} |")
    print(f"| `wfsql run` again, nothing changed (views reused) | {rerun:.2f} | {rerun / floor:.2f} |")


if __name__ == "__main__":
    main()
