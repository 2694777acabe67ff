"""Time `wfsql test` with batched column tests against one query per test, on a 1,000,000-row table.

Usage: ``python benchmarks/bench_tests.py [--rows N] [--repeat N] [--threads N]``.

A throwaway project (under a temporary folder) holds one table model of N rows and 20 columns of mixed
types, built once with DuckDB's ``range()``, and a schema.yml with 100 column tests: not_null on every
column, accepted_values on the categorical ones, expression_is_true range checks, and unique on three
keys. Two of them fail on purpose, so the failure path (an exact count and a sample) is timed as well.

Both modes run in the same process, alternating, on the same database:
(a) batched (the default): every batchable test of a relation is answered by one aggregate scan;
(b) one by one (``RunOptions(extra={"no_batch_tests": True})``): one ``count(*)`` query per test.
Each is timed ``--repeat`` times (``Project.load`` + ``Project.test``, compile cache warm) and the
median is reported, for all tests and again without the ``unique`` ones (which never batch: their cost
is hashing a million keys, the same either way), with the number of queries sent through
``DuckDBAdapter.execute`` that read the table. The sample of failing rows (one query per failing test,
in both modes) goes through a cursor and is not counted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import wfsql.adapter
from wfsql.api import Project, RunOptions
from wfsql.console import Console

# name -> SQL over `range` (r); 20 columns of mixed types. `maybe_null` is null on 1 row in 1,000.
COLUMNS: dict[str, str] = {
    "id": "r",
    "id_text": "'k' || r::varchar",
    "id_shifted": "r + 1000000000",
    "small_int": "(r % 100)::integer",
    "medium_int": "(r % 10000)::integer",
    "big_int": "r * 7919",
    "ratio": "(r % 1000) / 1000.0",
    "price": "((r % 5000) / 100.0)::decimal(10, 2)",
    "score": "((r * 37) % 1000)::double / 10",
    "status": "['new', 'paid', 'shipped', 'returned'][1 + r % 4]",
    "country": "['DE', 'FR', 'US', 'JP', 'BR'][1 + r % 5]",
    "channel": "['web', 'app', 'store'][1 + r % 3]",
    "tier": "['gold', 'silver', 'bronze'][1 + (r // 7) % 3]",
    "flag": "r % 2 = 0",
    "active": "r % 3 != 0",
    "created_date": "date '2020-01-01' + (r % 1500)::integer",
    "created_at": "timestamp '2020-01-01' + to_seconds(r)",
    "label": "'item-' || (r % 997)::varchar",
    "weight": "(r % 250)::float + 0.5",
    "maybe_null": "case when r % 1000 = 0 then null else r end",
}
CATEGORIES: dict[str, list[Any]] = {
    "status": ["new", "paid", "shipped", "returned"],
    "country": ["DE", "FR", "US", "JP", "BR"],
    "channel": ["web", "app", "store"],
    "tier": ["gold", "silver", "bronze"],
}
UNIQUE = ["id", "id_text", "id_shifted"]


def _expressions() -> list[tuple[str, str]]:
    """(column, expression) range checks; all hold on the data except the last one."""
    checks = [
        ("id", ">= 0"),
        ("id_shifted", ">= 1000000000"),
        ("small_int", "between 0 and 99"),
        ("medium_int", "between 0 and 9999"),
        ("big_int", ">= 0"),
        ("ratio", "between 0 and 1"),
        ("price", ">= 0"),
        ("price", "< 50"),
        ("score", "between 0 and 100"),
        ("weight", "> 0"),
        ("weight", "< 251"),
        ("created_date", ">= date '2020-01-01'"),
        ("created_at", ">= timestamp '2020-01-01'"),
        ("label", "like 'item-%'"),
        ("id_text", "like 'k%'"),
        ("maybe_null", ">= 0"),
    ]
    out = list(checks)
    for threshold in range(1, 200):  # more distinct checks of the same shape, until we have enough
        out.append(("medium_int", f"< {10000 + threshold}"))
        out.append(("small_int", f"> {-threshold}"))
    return out


def make_project(folder: Path, rows: int) -> int:
    """Write the project; return the number of tests declared."""
    select = ",\n    ".join(f"{sql} as {name}" for name, sql in COLUMNS.items())
    (folder / "models").mkdir(parents=True, exist_ok=True)
    (folder / "wfsql_project.yml").write_text("name: bench\n")
    (folder / "models" / "wide.sql").write_text(
        f"{{{{ config(materialized='table') }}}}\nselect\n    {select}\nfrom (select range as r from range({rows}))\n"
    )
    tests: dict[str, list[str]] = {name: ["not_null"] for name in COLUMNS}  # 20 (maybe_null fails)
    count = len(COLUMNS)
    for name in UNIQUE:  # 3
        tests[name].append("unique")
        count += 1
    for name, values in CATEGORIES.items():  # 4 + 4 with a where filter
        tests[name].append(f"accepted_values: {{values: {values}}}")
        tests[name].append(f'accepted_values: {{values: {values}, config: {{where: "flag"}}, name: av_{name}_flag}}')
        count += 2
    tests["tier"].append("accepted_values: {values: ['gold', 'silver'], name: av_tier_fails}")  # fails
    count += 1
    for column, expression in _expressions():
        if count >= 100:
            break
        tests[column].append(f'expression_is_true: {{expression: "{expression}"}}')
        count += 1
    lines = ["models:", "  - name: wide", "    columns:"]
    for name, specs in tests.items():
        lines += [f"      - name: {name}", "        tests:"] + [f"          - {spec}" for spec in specs]
    (folder / "models" / "schema.yml").write_text("\n".join(lines) + "\n")
    return count


class QueryCounter:
    """Counts SQL sent through DuckDBAdapter.execute that reads the benchmark table."""

    def __init__(self) -> None:
        self.count = 0
        self._original = wfsql.adapter.DuckDBAdapter.execute

    def __enter__(self) -> QueryCounter:
        original = self._original

        def counting(adapter: Any, sql: str, parameters: Any = None) -> Any:
            if '"wide"' in sql:
                self.count += 1
            return original(adapter, sql, parameters)

        wfsql.adapter.DuckDBAdapter.execute = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        wfsql.adapter.DuckDBAdapter.execute = self._original  # type: ignore[method-assign]


def _silent() -> Console:
    return Console(quiet=True, file=io.StringIO())


def run_tests(
    folder: Path, threads: int | None, batched: bool, exclude: tuple[str, ...]
) -> tuple[float, int, dict[str, tuple[str, int | None]]]:
    """One `wfsql test`: wall time, queries on the table, and name -> (status, failures)."""
    project = Project.load(folder, threads=threads, console=_silent())
    project.compile()
    options = RunOptions(exclude=exclude, extra={} if batched else {"no_batch_tests": True})
    with QueryCounter() as counter:
        started = time.perf_counter()
        results = project.test(options)
        elapsed = time.perf_counter() - started
    return elapsed, counter.count, {r.name: (r.status, r.failures) for r in results.results}


def measure(folder: Path, args: argparse.Namespace, title: str, exclude: tuple[str, ...] = ()) -> None:
    """Alternate batched and one-by-one runs `--repeat` times; print a markdown table of medians."""
    times: dict[bool, list[float]] = {True: [], False: []}
    queries: dict[bool, int] = {}
    outcome: dict[bool, dict[str, tuple[str, int | None]]] = {}
    for _ in range(args.repeat):
        for batched in (True, False):
            elapsed, count, outcome[batched] = run_tests(folder, args.threads, batched, exclude)
            times[batched].append(elapsed)
            queries[batched] = count
    assert outcome[True] == outcome[False], "batched and one-by-one runs disagree"  # same statuses and counts
    statuses = [status for status, _ in outcome[True].values()]
    summary = ", ".join(f"{statuses.count(s)} {s}" for s in sorted(set(statuses)))
    batched_s, single_s = statistics.median(times[True]), statistics.median(times[False])
    runs = {mode: ", ".join(f"{t:.3f}" for t in times[mode]) for mode in (True, False)}
    print(f"\n**{title}** ({len(statuses)} tests: {summary}; identical counts in both modes)\n")
    print("| mode | median (s) | runs (s) | queries on the table |")
    print("|---|---:|---|---:|")
    print(f"| batched | {batched_s:.3f} | {runs[True]} | {queries[True]} |")
    print(f"| one by one (`no_batch_tests`) | {single_s:.3f} | {runs[False]} | {queries[False]} |")
    print(
        f"| ratio (one by one / batched) | {single_s / batched_s:.2f}x | "
        f"| {queries[False] / max(queries[True], 1):.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: the project's (4)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="wfsql_bench_tests_") as tmp:
        folder = Path(tmp)
        declared = make_project(folder, args.rows)
        started = time.perf_counter()
        built = Project.load(folder, console=_silent()).run()
        assert built.success, [r.message for r in built.results]
        build_time = time.perf_counter() - started
        threads = args.threads or Project.load(folder, console=_silent()).config.threads
        print(
            f"{declared} column tests on a {args.rows:,}-row, {len(COLUMNS)}-column table "
            f"(built in {build_time:.2f}s); {threads} thread(s), {os.cpu_count()} CPU(s); "
            f"median of {args.repeat} runs each"
        )
        run_tests(folder, args.threads, True, ())  # warm-up: OS cache, compile cache
        measure(folder, args, "All tests")
        measure(
            folder,
            args,
            "Without the unique tests (the batchable ones only)",
            exclude=tuple(f"unique_wide_{name}" for name in UNIQUE),
        )


if __name__ == "__main__":
    main()
