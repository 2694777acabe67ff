"""LLM functions inside SQL models: set operations, the persistent cache, incremental reuse, limits.

Runs on a tiny randomly initialised model with the real SmolLM2 tokenizer (fast); the real default
model is exercised by the slow tests of tests/test_llm_*.py and by the template pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.errors import CompileError

pytest.importorskip("torch")
pytest.importorskip("outlines")

SCHEMA = '{"type": "object", "properties": {"mood": {"type": "string", "enum": ["good", "bad"]}}, "required": ["mood"]}'


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wfsql.llm.models import make_tiny_model

    directory = tmp_path_factory.mktemp("tiny_model")
    make_tiny_model(directory)
    return directory


def _project(root: Path, model_dir: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "wfsql_project.yml").write_text(
        "name: llmsql\nthreads: 1\n"
        f"llm:\n  models:\n    tiny: {{source: {model_dir}, max_new_tokens: 48, feedback_method: rubric}}\n"
        "  roles: {classifier: tiny, generator: tiny, extractor: tiny}\n"
    )
    values = ", ".join(f"('{a}', '{b}', '{c}', '{d}')" for a, b, c, d in rows)
    (root / "models" / "inputs.sql").write_text(
        f"{{{{ config(materialized='table') }}}}\nselect * from (values {values}) as t(id, history, reply, turn)"
    )
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select id, feedback_signal(history, reply, turn) as signal,\n"
        "  llm_classify(turn, ['positive', 'negative']) as sentiment,\n"
        f"  llm_extract(turn, '{SCHEMA}') as extracted,\n"
        "  llm_generate('Answer: ' || turn, options := '{\"max_tokens\": 4}') as answer\n"
        "from {{ ref('inputs') }}\n"
        "{% if is_incremental() %}where id not in (select id from {{ this }}){% endif %}\n"
    )
    return root


def _run(root: Path, **extra: object) -> tuple[bool, str]:
    project = Project.load(root, console=Console(quiet=True))
    results = project.run(RunOptions(extra=dict(extra)))
    message = next(r.message for r in results.results if r.name == "signals")
    return results.success, message


def _cache_rows(root: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        return con.execute("select function, status from _wfsql.llm_cache order by 1").fetchall()


ROWS = [("a", "h", "r", "thanks!"), ("b", "h", "r", "that is wrong"), ("c", "h", "r", "that is wrong")]


def test_distinct_inputs_are_computed_once_and_outputs_are_valid(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    ok, message = _run(root)
    assert ok, message
    # two distinct turns x four functions: the duplicate row costs nothing
    assert "LLM: 8 call(s)" in message and "0 failed" in message
    assert len(_cache_rows(root)) == 8
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select id, signal.sat, signal.dsat, sentiment.label, sentiment.probability, extracted->>'mood', answer "
            "from signals order by id"
        ).fetchall()
    assert [r[0] for r in rows] == ["a", "b", "c"]
    for _, sat, dsat, label, probability, mood, answer in rows:
        assert isinstance(sat, bool) and isinstance(dsat, bool)
        assert label in ("positive", "negative") and 0.0 <= probability <= 1.0
        assert mood in ("good", "bad")  # constrained: always valid against the schema
        assert answer is not None
    assert rows[1][1:] == rows[2][1:]  # same input, same answer


def test_rerun_is_all_cache_hits_and_new_rows_cost_only_their_calls(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    assert _run(root)[0]
    ok, message = _run(root, **{})
    assert ok and "LLM: 0 call(s)" in message  # incremental: no new ids, nothing to ask
    _project(root, tiny_model, [*ROWS, ("d", "h", "r", "please make it shorter")])
    ok, message = _run(root)
    assert ok and "LLM: 4 call(s)" in message, message
    assert len(_cache_rows(root)) == 12


def test_full_refresh_recomputes_nothing_the_cache_has(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    assert _run(root)[0]
    project = Project.load(root, console=Console(quiet=True))
    results = project.run(RunOptions(full_refresh=True))
    message = next(r.message for r in results.results if r.name == "signals")
    assert "LLM: 0 call(s)" in message and "8 cache hit(s)" in message
    # a dry run decides incremental or full as the build does: the full refresh would find all 8 in the cache
    dry = project.run(RunOptions(select=("signals",), full_refresh=True, extra={"dry_run": True}))
    assert "needs 0 LLM call(s)" in dry.results[0].message and "8 already cached" in dry.results[0].message
    dry = project.run(RunOptions(select=("signals",), extra={"dry_run": True}))
    assert "0 already cached" in dry.results[0].message  # incremental: no new rows to ask about


def test_llm_limit_caps_calls_and_dry_run_writes_nothing(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    project = Project.load(root, console=Console(quiet=True))
    assert project.run(RunOptions(select=("inputs",))).success
    dry = Project.load(root, console=Console(quiet=True)).run(RunOptions(select=("signals",), extra={"dry_run": True}))
    assert "needs 8 LLM call(s)" in dry.results[0].message
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from duckdb_tables() where table_name = 'signals'").fetchall() == [(0,)]
    ok, message = _run(root, llm_limit=3)
    assert ok and "LLM: 3 call(s)" in message and "over --llm-limit" in message


def test_dry_run_on_a_fresh_database_inlines_unbuilt_inputs(tmp_path: Path, tiny_model: Path) -> None:
    """Nothing upstream is built and nothing gets built: the inputs' SQL is read in place of their tables."""
    root = _project(tmp_path / "p", tiny_model, ROWS)
    (root / "models" / "recent.sql").write_text("select * from {{ ref('inputs') }} as i where i.id <> 'zzz'")
    (root / "models" / "signals.sql").write_text(
        (root / "models" / "signals.sql").read_text().replace("{{ ref('inputs') }}", "{{ ref('recent') }}")
    )
    (root / "models" / "answers.sql").write_text(  # an LLM model reading another LLM model's answers
        "{{ config(materialized='table') }}\nselect llm_generate(answer) as again from {{ ref('signals') }}"
    )
    dry = Project.load(root, console=Console(quiet=True)).run(RunOptions(extra={"dry_run": True}))
    messages = {r.name: r.message for r in dry.results}
    assert "needs 8 LLM call(s)" in messages["signals"] and "0 already cached" in messages["signals"]
    assert "not counted: it reads signals, which is not built" in messages["answers"]
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        tables = con.execute("select table_name from duckdb_tables() where schema_name = 'main'").fetchall()
        views = con.execute("select view_name from duckdb_views() where not internal").fetchall()
    assert tables == [] and views == []


def test_dry_run_looks_through_ephemerals_and_names_an_unbuilt_python_model(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    ephemeral = "{{ config(materialized='ephemeral') }}\nselect * from {{ ref('inputs') }}"
    (root / "models" / "eph.sql").write_text(ephemeral)
    (root / "models" / "signals.sql").write_text(
        (root / "models" / "signals.sql").read_text().replace("{{ ref('inputs') }}", "{{ ref('eph') }}")
    )
    (root / "models" / "py_rows.py").write_text(
        "def model(wf, con):\n    wf.config(materialized='table')\n    return wf.ref('inputs').arrow()\n"
    )
    (root / "models" / "from_python.sql").write_text(
        "{{ config(materialized='table') }}\nselect llm_generate(turn) as g from {{ ref('py_rows') }}"
    )
    dry = Project.load(root, console=Console(quiet=True)).run(RunOptions(extra={"dry_run": True}))
    messages = {r.name: r.message for r in dry.results}
    assert "needs 8 LLM call(s)" in messages["signals"]  # inputs, read through the ephemeral, was inlined
    assert "it reads py_rows, which is not built and is a Python model" in messages["from_python"]


def test_a_build_capped_by_llm_limit_is_rebuilt_in_full_next_time(tmp_path: Path, tiny_model: Path) -> None:
    """An incremental model's capped build holds NULLs its `where id not in {{ this }}` would never revisit."""
    root = _project(tmp_path / "p", tiny_model, ROWS)
    ok, message = _run(root, llm_limit=3)
    assert ok and "over --llm-limit" in message
    modified = Project.load(root, console=Console(quiet=True)).ls(select=("state:modified",))
    assert "signals" in {node.name for node in modified}  # a capped build is not an up-to-date one
    ok, message = _run(root)
    assert ok and "in full: its last build was capped by --llm-limit" in message, message
    assert "LLM: 5 call(s)" in message and "3 cache hit(s)" in message  # the finished calls came from the cache
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        nulls = con.execute("select count(*) from signals where signal is null or answer is null").fetchall()
    assert nulls == [(0,)]
    ok, message = _run(root)
    assert ok and "LLM: 0 call(s)" in message and "in full" not in message  # complete now: incremental again


def test_llm_calls_in_a_view_are_a_compile_error(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    (root / "models" / "bad_view.sql").write_text("select llm_generate(turn) as x from {{ ref('inputs') }}")
    with pytest.raises(CompileError, match="materialise it as a table"):
        Project.load(root, console=Console(quiet=True)).compile()


def test_unknown_model_name_is_a_clear_error(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    (root / "models" / "signals.sql").write_text(
        "{{ config(materialized='table') }}\nselect llm_generate(turn, model := 'tinny') as x from {{ ref('inputs') }}"
    )
    project = Project.load(root, console=Console(quiet=True))
    results = project.run(RunOptions())
    failed = next(r for r in results.results if r.name == "signals")
    assert failed.status == "error" and "did you mean 'tiny'" in failed.message


def test_rejected_answers_stay_cached_and_exceptions_are_retried(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rejected answer (here: JSON cut off by max_new_tokens) is a function of its cache key, so a rerun keeps
    it instead of paying for it again; an exception may be transient, so it is retried."""
    from wfsql.llm.transformers_backend import TransformersBackend

    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "models" / "extracted.sql").write_text(
        "{{ config(materialized='table') }}\n"
        f"select llm_extract(t, '{SCHEMA}') as e from (values ('one'), ('two')) as v(t)"
    )
    (root / "wfsql_project.yml").write_text(
        f"name: f\nllm:\n  models:\n    tiny: {{source: {tiny_model}, max_new_tokens: 2}}\n"
        "  roles: {extractor: tiny}\n"
    )

    def build(**extra: object) -> str:
        results = Project.load(root, console=Console(quiet=True)).run(RunOptions(extra=dict(extra)))
        assert results.success
        return results.results[0].message

    real_extract = TransformersBackend.extract

    def broken(self: TransformersBackend, *args: object, **kwargs: object) -> object:
        raise RuntimeError("out of memory (simulated)")

    def cached_errors() -> list[str]:
        with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
            return [e for (e,) in con.execute("select error from _wfsql.llm_cache where status = 'error'").fetchall()]

    monkeypatch.setattr(TransformersBackend, "extract", broken)
    for _ in range(2):  # an exception: retried on the next run too
        message = build()
        assert "LLM: 2 call(s)" in message and "2 failed" in message and "rejected before" not in message
    assert all("out of memory (simulated)" in e for e in cached_errors())
    monkeypatch.setattr(TransformersBackend, "extract", real_extract)
    first = build()  # the model runs now; two tokens cannot finish a JSON object: rejected
    assert "LLM: 2 call(s)" in first and "2 failed" in first
    again = build()
    assert "LLM: 0 call(s)" in again and "2 failed" in again and "2 of them rejected before and kept" in again
    assert "--llm-retry-failed" in again
    # The CLI flag reaches the runtime (run_results.json records each model's message).
    from typer.testing import CliRunner

    from wfsql.cli import app

    outcome = CliRunner().invoke(app, ["build", "--project-dir", str(root), "--quiet", "--llm-retry-failed"])
    assert outcome.exit_code == 0, outcome.output
    results = json.loads((root / "target" / "run_results.json").read_text())["results"]
    assert any("LLM: 2 call(s)" in (r.get("message") or "") for r in results), results
    errors = cached_errors()
    assert len(errors) == 2 and all(e.startswith("rejected output: the JSON was not complete") for e in errors)
    # The model's max_new_tokens is part of an extraction's key: raising it asks again without any flag.
    (root / "wfsql_project.yml").write_text(
        (root / "wfsql_project.yml").read_text().replace("max_new_tokens: 2", "max_new_tokens: 3")
    )
    assert "LLM: 2 call(s)" in build()
    # With on_error: fail, kept rejections fail the model (saying how to retry them), but a dry run only plans.
    config = (root / "wfsql_project.yml").read_text()
    (root / "wfsql_project.yml").write_text(config.replace("  roles:", "  on_error: fail\n  roles:"))
    assert build(dry_run=True)
    failed = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert not failed.success and "--llm-retry-failed" in failed.results[0].message


def test_failed_calls_are_null_with_a_status_row_or_fail_the_model(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "models" / "extracted.sql").write_text(
        "{{ config(materialized='table') }}\n"
        f"select llm_extract(t, '{SCHEMA}') as e from (values ('one'), ('two')) as v(t)"
    )
    # two new tokens cannot finish any JSON object: every call fails, visibly
    config = (
        f"name: f\nllm:\n  models:\n    tiny: {{source: {tiny_model}, max_new_tokens: 2}}\n"
        "  roles: {extractor: tiny}\n"
    )
    (root / "wfsql_project.yml").write_text(config)
    ok, _ = (lambda r: (r.success, r))(Project.load(root, console=Console(quiet=True)).run(RunOptions()))
    assert ok
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from extracted where e is null").fetchall() == [(2,)]
        statuses = con.execute("select status, error is not null from _wfsql.llm_cache").fetchall()
    assert statuses == [("error", True), ("error", True)]
    (root / "wfsql_project.yml").write_text(config.replace("  roles:", "  on_error: fail\n  roles:"))
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert not results.success
    assert "LLM call(s) failed in model extracted and on_error is 'fail'" in results.results[0].message


def test_two_llm_models_build_in_parallel(tmp_path: Path, tiny_model: Path) -> None:
    root = _project(tmp_path / "p", tiny_model, ROWS)
    config = (root / "wfsql_project.yml").read_text()
    (root / "wfsql_project.yml").write_text(config.replace("threads: 1", "threads: 2"))
    for name in ("left_side", "right_side"):
        (root / "models" / f"{name}.sql").write_text(
            "{{ config(materialized='table') }}\n"
            f"select id, llm_classify(turn || ' {name}', ['x', 'y']) as c from {{{{ ref('inputs') }}}}"
        )
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert results.success, [r.message for r in results.results if r.failed]
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        for name in ("left_side", "right_side"):
            assert con.execute(f"select count(*) from {name} where c.label in ('x', 'y')").fetchall() == [(3,)]


def test_two_models_running_at_once_compute_a_shared_prompt_once(tmp_path: Path, tiny_model: Path) -> None:
    """expert_pairs and onpolicy_pairs in the template ask the same prompt under two roles that name one model."""
    import re

    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "wfsql_project.yml").write_text(
        "name: shared\nthreads: 2\n"
        f"llm:\n  batch_size: 2\n  models:\n    tiny: {{source: {tiny_model}, max_new_tokens: 8}}\n"
        "  roles: {generator: tiny, policy: tiny}\n"
    )
    (root / "models" / "prompts.sql").write_text(
        "{{ config(materialized='table') }}\nselect 'Write a word about topic ' || i::varchar as p from range(24) t(i)"
    )
    for name, role in (("first", "generator"), ("second", "policy")):
        (root / "models" / f"{name}.sql").write_text(
            "{{ config(materialized='table') }}\n"
            f"select p, llm_generate(p, options := '{{\"max_tokens\": 8}}', model := '{role}') as answer "
            "from {{ ref('prompts') }}"
        )
    results = Project.load(root, console=Console(quiet=True)).run(RunOptions())
    assert results.success, [r.message for r in results.results]
    messages = {r.name: r.message for r in results.results}
    calls = sum(int(re.search(r"LLM: (\d+) call", messages[n]).group(1)) for n in ("first", "second"))
    hits = sum(int(re.search(r"(\d+) cache hit", messages[n]).group(1)) for n in ("first", "second"))
    assert (calls, hits) == (24, 24), messages
    with duckdb.connect(str(root / "target" / "wfsql.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from _wfsql.llm_cache").fetchall() == [(24,)]
        same = con.execute("select count(*) from first join second using (p) where first.answer = second.answer")
        assert same.fetchall() == [(24,)]
