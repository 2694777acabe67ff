"""The forked sqlglot worker: same analyses as in-process parsing, and nothing lost when it fails."""

from __future__ import annotations

import os
import signal
import time

import pytest
from conftest import load

from wfsql import compiler, parse_worker
from wfsql.parse_worker import MIN_MODELS_FOR_WORKER, ParseWorker
from wfsql.sql_analysis import analyze_sql

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker needs os.fork")

SQLS = [
    "select a, b from main.t join s.u using (a)",
    "with x as (select 1 as a) select * from x, other",
    "select llm_classify(text, ['a', 'b']) as label from src",
    "select from where",  # a syntax error: the worker must report it as in-process parsing does
    "select 1; select 2",
    "insert into t values (1)",
]


def _child_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_worker_gives_the_in_process_analyses_in_order():
    worker = ParseWorker.start()
    assert worker is not None
    pid = worker._pid
    assert worker.analyze(SQLS) == [analyze_sql(sql) for sql in SQLS]
    assert _child_gone(pid)  # reaped, no zombie left behind


def test_a_large_batch_does_not_deadlock_on_the_pipe():
    sqls = [f"select {i} as n, '{'x' * 500}' as pad from main.t{i}" for i in range(2000)]  # ~1 MB each way
    worker = ParseWorker.start()
    assert worker is not None
    results = worker.analyze(sqls)
    assert [r.tables for r in results[:3]] == [(("main", "t0"),), (("main", "t1"),), (("main", "t2"),)]
    assert len(results) == 2000 and not any(r.error for r in results)


def test_a_dead_worker_falls_back_to_in_process_parsing():
    worker = ParseWorker.start()
    assert worker is not None
    os.kill(worker._pid, signal.SIGKILL)
    time.sleep(0.05)
    assert worker.analyze(SQLS) == [analyze_sql(sql) for sql in SQLS]


def test_a_worker_replying_garbage_falls_back(monkeypatch):
    def child(request_fd: int, reply_fd: int) -> None:
        try:
            parse_worker._read_message(request_fd)
            parse_worker._write_all(reply_fd, b"not a pickle")
        finally:
            os._exit(0)

    monkeypatch.setattr(parse_worker, "_child", child)
    worker = ParseWorker.start()
    assert worker is not None
    assert worker.analyze(SQLS[:2]) == [analyze_sql(sql) for sql in SQLS[:2]]


def test_an_unused_worker_is_killed_on_close():
    worker = ParseWorker.start()
    assert worker is not None
    pid = worker._pid
    worker.close()
    assert _child_gone(pid)
    worker.close()  # idempotent


def _big_project(make_project, broken: str | None = None):
    files = {
        f"models/m{i}.sql": f"select {i} as n from {{{{ ref('m{i - 1}') }}}}" for i in range(1, MIN_MODELS_FOR_WORKER)
    }
    files["models/m0.sql"] = "select 0 as n from main.raw_table"  # reads a relation directly: analysis sees it
    files["models/reader.sql"] = "select * from main.m7"  # another model without ref(): a warning and a dependency
    if broken:
        files[broken] = "select from where"
    return make_project(files)


def test_compile_with_the_worker_equals_compile_without(make_project, monkeypatch):
    started = []
    real_start = ParseWorker.start

    def start():
        worker = real_start()
        started.append(worker)
        return worker

    monkeypatch.setattr(ParseWorker, "start", staticmethod(start))
    root = _big_project(make_project)
    with_worker = load(root).compile(write_artifacts=False)
    assert len(started) == 1  # 200 unseen models: the worker ran
    monkeypatch.setenv("WFSQL_PARSE_WORKER", "0")
    without = compiler.compile_project(load(root).config, use_cache=False)
    assert len(started) == 1
    assert {u: n.fingerprint for u, n in with_worker.nodes.items()} == {
        u: n.fingerprint for u, n in without.nodes.items()
    }
    assert with_worker.dag.parents("model.proj.reader") == ("model.proj.m7",)
    assert with_worker.warnings == without.warnings and any("reads main.m7 directly" in w for w in without.warnings)


def test_a_syntax_error_found_by_the_worker_names_the_model(make_project):
    root = _big_project(make_project, broken="models/bad.sql")
    with pytest.raises(Exception) as caught:
        load(root).compile(write_artifacts=False)
    assert "bad" in str(caught.value) and "models/bad.sql" in str(caught.value)


def test_small_projects_and_warm_compiles_do_not_fork(make_project, monkeypatch):
    calls = []
    monkeypatch.setattr(ParseWorker, "start", staticmethod(lambda: calls.append(1)))
    small = make_project({"models/a.sql": "select 1 as a", "models/b.sql": "select * from {{ ref('a') }}"})
    load(small).compile()
    assert calls == []
    monkeypatch.undo()
    root = _big_project(make_project)
    load(root).compile()  # cold: forks, fills the cache
    monkeypatch.setattr(ParseWorker, "start", staticmethod(lambda: calls.append(1)))
    (root / "models" / "m3.sql").write_text("select 3 as n, 1 as extra from {{ ref('m2') }}")
    load(root).compile()  # one changed model: parsed in-process
    assert calls == []


def test_a_hung_worker_is_killed_after_the_deadline(monkeypatch):
    def child(request_fd: int, reply_fd: int) -> None:
        try:
            time.sleep(60)  # never reads: the parent's writer thread blocks on a full pipe too
        finally:
            os._exit(0)

    monkeypatch.setattr(parse_worker, "_child", child)
    monkeypatch.setattr(parse_worker, "TIMEOUT_BASE_S", 0.5)
    monkeypatch.setattr(parse_worker, "TIMEOUT_PER_SQL_S", 0.0)
    worker = ParseWorker.start()
    assert worker is not None
    pid = worker._pid
    sqls = [f"select {i} as n, '{'x' * 200}' from main.t" for i in range(1000)]  # more than a pipe buffer
    started = time.monotonic()
    assert worker.analyze(sqls) == [analyze_sql(sql) for sql in sqls]
    assert time.monotonic() - started < 10
    assert _child_gone(pid)


def test_compiled_files_written_while_parsing_equal_those_of_a_plain_compile(make_project, monkeypatch):
    calls = []
    real = compiler._Builder._analyse_all

    def spy(self, models):
        calls.append(self.while_parsing is not None and self.worker is not None)
        return real(self, models)

    monkeypatch.setattr(compiler._Builder, "_analyse_all", spy)
    root = _big_project(make_project)
    (root / "models" / "schema.yml").write_text(
        "models:\n  - name: m1\n    columns:\n      - name: n\n        tests: [not_null]\n"
    )
    load(root).compile()
    assert calls == [True]  # the worker ran and the writer was handed the SQL
    early = {p.relative_to(root / "target").as_posix(): p.read_text() for p in (root / "target").rglob("*.sql")}
    assert "compiled/proj/models/m7.sql" in early and any("/tests/" in p for p in early)  # tests come after
    import shutil

    shutil.rmtree(root / "target")
    monkeypatch.setenv("WFSQL_PARSE_WORKER", "0")
    load(root).compile()
    plain = {p.relative_to(root / "target").as_posix(): p.read_text() for p in (root / "target").rglob("*.sql")}
    assert early == plain and len(plain) == MIN_MODELS_FOR_WORKER + 2
