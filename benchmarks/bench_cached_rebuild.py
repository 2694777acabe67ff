"""Per-row overhead of a fully cached rebuild: 20,000 distinct `feedback_signal` rows.

    python benchmarks/bench_cached_rebuild.py [LABEL]

The calibrated classifier answers (it goes through the same LLM runtime and cache as a model would, but computes in
seconds); then the table is rebuilt three times with --full-refresh, every answer from the cache. What is left is
wfsql's per-row work: collecting the calls, the cache lookup, resolving the UDF. Run it on two checkouts to compare.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from wfsql.api import Project, RunOptions
from wfsql.console import Console

ROWS = 20_000


def project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="wfsql_rebuild_"))
    (root / "models").mkdir()
    (root / "wfsql_project.yml").write_text("name: rebuild\nthreads: 1\n")
    pq.write_table(
        pa.table({
            "id": list(range(ROWS)),
            "history": ["user: hi"] * ROWS,
            "reply": [f"Here is answer {i}. Would you like more?" for i in range(ROWS)],
            "turn": [f"thanks, now item {i}" for i in range(ROWS)],
        }),
        root / "turns.parquet",
    )
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, feedback_signal(history, reply, turn) as s from read_parquet('turns.parquet')"
    )
    return root


def timed_run(root: Path, options: RunOptions) -> tuple[float, str]:
    started = time.perf_counter()
    results = Project.load(root, console=Console(quiet=True)).run(options)
    assert results.success, results.results[0].message
    return time.perf_counter() - started, results.results[0].message


def main() -> None:
    root = project()
    first, _ = timed_run(root, RunOptions())
    rebuilds = []
    for _ in range(3):
        seconds, message = timed_run(root, RunOptions(full_refresh=True))
        assert "LLM: 0 call(s)" in message, message
        rebuilds.append(round(seconds, 2))
    label = sys.argv[1] if len(sys.argv) > 1 else "this checkout"
    print(f"{label}: first build {first:.1f} s, fully cached rebuilds of {ROWS:,} rows {rebuilds} s")


if __name__ == "__main__":
    main()
