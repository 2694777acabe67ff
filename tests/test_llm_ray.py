"""The Ray executor (`--executor ray`): same answers as the local executor, actor deaths, failing rows.

One local Ray (4 logical CPUs on this 2-core machine: an actor pool that takes every CPU leaves none for
Ray Data's other tasks and hangs) is started once for the module and shared; each Ray run still starts its
own actor pool, which imports torch and loads the model (a few seconds). The tiny random model covers the
machinery; one slow test compares the real default model's answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest.importorskip("torch")
pytest.importorskip("outlines")
ray = pytest.importorskip("ray")

from typer.testing import CliRunner  # noqa: E402

from wfsql.api import Project, RunOptions  # noqa: E402
from wfsql.cli import _GLOBAL, app  # noqa: E402
from wfsql.console import Console  # noqa: E402
from wfsql.errors import WfsqlError  # noqa: E402
from wfsql.llm.executor import DIE_ONCE_ENV, RAISE_ON_ENV, RaySettings, describe_cluster  # noqa: E402
from wfsql.llm.runtime import LLMSettings  # noqa: E402

SCHEMA = '{"type": "object", "properties": {"mood": {"type": "string", "enum": ["good", "bad"]}}, "required": ["mood"]}'


@pytest.fixture(scope="module")
def local_ray() -> Any:
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wfsql.llm.models import ModelUnavailableError, make_tiny_model

    directory = tmp_path_factory.mktemp("tiny_model")
    try:
        make_tiny_model(directory)
    except ModelUnavailableError as error:
        pytest.skip(f"the tiny model borrows the default model's tokenizer: {error}")
    return directory


def _turns(n: int) -> list[tuple[str, str, str, str]]:
    words = ["thanks", "wrong", "shorter please", "great", "no, I meant the other one", "why?", "ok", "again"]
    return [
        (f"r{i:03d}", f"User: question {i}", f"Answer number {i}.", f"{words[i % len(words)]} {i}") for i in range(n)
    ]


def _project(
    root: Path,
    model_dir: Path | None,
    rows: list[tuple[str, str, str, str]],
    llm_extra: str = "",
    model_extra: str = "",
) -> Path:
    (root / "models").mkdir(parents=True, exist_ok=True)
    llm = (
        f"llm:\n  models:\n    tiny: {{source: {model_dir}, max_new_tokens: 32{model_extra}}}\n"
        "  roles: {classifier: tiny, generator: tiny, extractor: tiny}\n"
        if model_dir is not None
        else "llm:\n"
    ) + llm_extra
    (root / "wfsql_project.yml").write_text(f"name: rayllm\nthreads: 1\n{llm}")
    values = ", ".join("(" + ", ".join("'" + v.replace("'", "''") + "'" for v in row) + ")" for row in rows)
    (root / "models" / "inputs.sql").write_text(
        f"{{{{ config(materialized='table') }}}}\nselect * from (values {values}) as t(id, history, reply, turn)"
    )
    return root


def _signals_model(root: Path, extract: bool = True) -> None:
    extract_sql = f"  llm_extract(turn, '{SCHEMA}') as extracted,\n" if extract else ""
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, feedback_signal(history, reply, turn) as signal,\n"
        "  llm_classify(turn, ['positive', 'negative']) as sentiment,\n"
        f"{extract_sql}"
        "  llm_generate('Answer: ' || turn, options := '{\"max_tokens\": 4}') as answer\n"
        "from {{ ref('inputs') }}\n"
    )


def _run(root: Path, **extra: Any) -> tuple[bool, str]:
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions(extra=dict(extra)))
    message = next(r.message for r in results.results if r.name == "signals")
    return results.success, message


def _rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def _same(local: list[tuple[Any, ...]], remote: list[tuple[Any, ...]]) -> None:
    """Equal, floats to 1e-6 (the batches are the same; only the process and thread scheduling differ)."""
    assert _close(local, remote), (local, remote)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-6
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# ------------------------------------------------------------------------------------ settings (no Ray)


def test_settings_parse_and_reject_typos() -> None:
    settings = LLMSettings.parse({"executor": "ray", "ray": {"replicas": 2, "gpus_per_replica": 1, "batch_size": 64}})
    assert settings.executor == "ray" and settings.ray == RaySettings(replicas=2, gpus_per_replica=1, batch_size=64)
    with pytest.raises(WfsqlError, match="did you mean 'replicas'"):
        LLMSettings.parse({"ray": {"replica": 2}})
    with pytest.raises(WfsqlError, match="executor must be one of local, ray"):
        LLMSettings.parse({"executor": "spark"})
    with pytest.raises(WfsqlError, match="replicas must be >= 1"):
        RaySettings.parse({"replicas": 0})


def test_debug_describes_the_cluster_it_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    line = describe_cluster(RaySettings(num_cpus=4))
    assert line.startswith(f"ray {ray.__version__}") and "starts a local Ray with 4 logical CPUs" in line


def test_debug_reports_a_running_cluster(tmp_path: Path, local_ray: Any) -> None:
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address, "COLUMNS": "400"}
    result = subprocess.run(
        [sys.executable, "-m", "wfsql.cli", "debug", "--project-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    line = next((x for x in result.stdout.splitlines() if "ray cluster" in x), result.stdout + result.stderr)
    assert "1 node(s), 4 CPU(s), 0 GPU(s)" in line, line


# ------------------------------------------------------------------------------------------ tiny model


def test_cli_run_with_ray_builds_the_same_table_as_local(tmp_path: Path, tiny_model: Path, local_ray: Any) -> None:
    rows = _turns(8)
    rubric = ", feedback_method: rubric"  # the model's own feedback pass, not the small-model lexical classifier
    local = _project(tmp_path / "local", tiny_model, rows, llm_extra="  batch_size: 4\n", model_extra=rubric)
    _signals_model(local)
    ok, message = _run(local)
    assert ok and "LLM: 32 call(s)" in message and "0 failed" in message, message
    remote = _project(tmp_path / "ray", tiny_model, rows, llm_extra="  batch_size: 4\n", model_extra=rubric)
    _signals_model(remote)
    try:
        result = CliRunner().invoke(app, ["run", "--project-dir", str(remote), "--executor", "ray"])
    finally:
        _GLOBAL.clear()
    assert result.exit_code == 0, result.output
    assert "LLM: 32 call(s)" in result.output and "0 failed" in result.output, result.output
    sql = "select * from signals order by id"
    _same(_rows(local, sql), _rows(remote, sql))
    cache_sql = "select key, value, status from _wfsql.llm_cache order by key"
    _same(_rows(local, cache_sql), _rows(remote, cache_sql))
    # only the driver wrote, each key once
    assert _rows(remote, "select count(*), count(distinct key) from _wfsql.llm_cache") == [(32, 32)]


def test_an_actor_that_dies_mid_batch_loses_and_duplicates_nothing(
    tmp_path: Path, tiny_model: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _turns(10)
    root = _project(tmp_path / "p", tiny_model, rows, llm_extra="  batch_size: 2\n  ray: {replicas: 1}\n")
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, llm_classify(turn, ['positive', 'negative']) as sentiment from {{ ref('inputs') }}\n"
    )
    marker = tmp_path / "died"
    monkeypatch.setenv(DIE_ONCE_ENV, str(marker))
    ok, message = _run(root, executor="ray")
    assert marker.exists(), "the test hook did not kill an actor"
    assert ok and "LLM: 10 call(s)" in message and "0 failed" in message, message
    counts = "select count(*), count(distinct key), count(*) filter (status = 'ok') from _wfsql.llm_cache"
    assert _rows(root, counts) == [(10, 10, 10)]
    assert _rows(root, "select count(*) from signals where sentiment.label is null") == [(0,)]
    # and the answers are the local executor's
    monkeypatch.delenv(DIE_ONCE_ENV)
    local = shutil.copytree(root, tmp_path / "local", ignore=shutil.ignore_patterns("target"))
    assert _run(local)[0]
    _same(_rows(local, "select * from signals order by id"), _rows(root, "select * from signals order by id"))


def test_a_failing_row_is_a_status_row_and_the_job_goes_on(
    tmp_path: Path, tiny_model: Path, local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _turns(6)
    rows[1] = ("r001", "h", "r", "this one POISON raises inside the actor")
    rows[4] = ("r004", "h", "r", "haha " * 9000)  # the user turn alone overflows the context: an error result
    # the rubric prompt, not the calibrated lexical classifier small models get by default, so the model runs
    root = _project(
        tmp_path / "p", tiny_model, rows, llm_extra="  batch_size: 4\n", model_extra=", feedback_method: rubric"
    )
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, feedback_signal(history, reply, turn) as signal from {{ ref('inputs') }}\n"
    )
    monkeypatch.setenv(RAISE_ON_ENV, "POISON")
    ok, message = _run(root, executor="ray")
    assert ok and "LLM: 6 call(s)" in message and "2 failed" in message, message
    sql = "select arguments->>'$[2]', status || ':' || coalesce(error, '') from _wfsql.llm_cache"
    statuses = dict(_rows(root, sql))
    assert statuses[rows[1][3]].startswith("error:RuntimeError: test hook")
    assert statuses[rows[4][3]].startswith("error:")
    assert sorted(v for k, v in statuses.items() if k not in (rows[1][3], rows[4][3])) == ["ok:"] * 4
    signals = dict(_rows(root, "select id, signal is null from signals"))
    assert signals == {r[0]: r[0] in ("r001", "r004") for r in rows}


def test_unknown_executor_and_missing_ray_are_clear_errors(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, _turns(2))
    _signals_model(root)
    with pytest.raises(WfsqlError, match="unknown executor 'rya'; did you mean 'ray'"):
        _run(root, executor="rya")


# ------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_real_default_model_gives_the_same_answers_on_ray(tmp_path: Path, local_ray: Any) -> None:
    from wfsql.llm.models import ModelUnavailableError, default_model_spec, ensure_converted

    try:
        ensure_converted(default_model_spec())  # convert once here, not in the actor and the driver at once
    except ModelUnavailableError as error:
        pytest.skip(str(error))
    rows = [
        ("a", "User: how do I sort a list in Python?", "Use sorted(xs) or xs.sort().", "Thanks, that worked!"),
        ("b", "User: when did WW2 end?", "It ended in 1955.", "That is wrong, it ended in 1945."),
        ("c", "User: write a haiku", "Leaves fall on the pond...", "Make it shorter and about the sea."),
        ("d", "", "Hello! How can I help?", "Tell me a joke about cats."),
    ]
    rubric = "  models: {default: {source: default, feedback_method: rubric}}\n"  # the model's feedback pass
    local = _project(tmp_path / "local", None, rows, llm_extra=rubric)
    _signals_model(local, extract=False)
    ok, message = _run(local)
    assert ok and "0 failed" in message, message
    remote = _project(tmp_path / "ray", None, rows, llm_extra=rubric)
    _signals_model(remote, extract=False)
    ok, message = _run(remote, executor="ray")
    assert ok and "0 failed" in message, message
    sql = "select * from signals order by id"
    _same(_rows(local, sql), _rows(remote, sql))


def test_a_lexical_feedback_job_on_ray_loads_no_model(tmp_path: Path, local_ray: Any) -> None:
    # The actors warm a model only for a function that needs it: `feedback_signal` under `feedback_method: lexical`
    # needs none, so weights that cannot load (a 1 KB file) do not fail the job.
    weights = tmp_path / "unloadable"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"\0" * 1024)
    rows = _turns(4)
    root = _project(tmp_path / "ray", weights, rows, model_extra=", feedback_method: lexical")
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select id, feedback_signal(history, reply, turn) as signal from {{ ref('inputs') }}\n"
    )
    ok, message = _run(root, executor="ray")
    assert ok and "LLM: 4 call(s)" in message and "0 failed" in message, message
    from wfsql.llm.calibrated import lexical_classifier

    answers = [(i, lexical_classifier().predict(reply, turn, history)[0]) for i, history, reply, turn in rows]
    expected = [(i, value["sat"], value["dsat"]) for i, value in answers]
    assert _rows(root, "select id, signal.sat, signal.dsat from signals order by id") == expected
    assert expected[0][1:] == (True, False) and expected[1][1:] == (False, True)  # "thanks 0", "wrong 1"
