"""dbt parity: wfsql builds dbt's example projects with the results real dbt-duckdb recorded.

`tests/fixtures/dbt_projects/<name>/expected_dbt_results.json` holds what dbt-duckdb 1.11 did with each
fixture project (format and recorder: tests/dbt_parity/README.md). Each project is copied to a temporary
folder and its recorded steps are replayed through wfsql's Python API, from a working directory outside
the project. After every step the database file must hold the same relations as dbt's (table or view,
column names and types, row count, content checksum) and the tests must end with the same status and
failure count. Where wfsql deliberately differs from dbt, the test asserts wfsql's documented behaviour
instead (README, "Known differences"). dbt itself is not needed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import pytest
import yaml

from wfsql.adapter import STATE_SCHEMA
from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.nodes import ModelNode, SeedNode
from wfsql.results import NodeResult
from wfsql.testing import TestNode as _TestNode  # aliased: pytest would try to collect Test*

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dbt_projects"
EXPECTED_FILE = "expected_dbt_results.json"
PROJECTS = sorted(p.parent.name for p in FIXTURES.glob(f"*/{EXPECTED_FILE}"))


def _load_checksum_helper() -> ModuleType:
    """tests/dbt_parity/checksum.py, the same code the recorder ran on dbt's database."""
    path = Path(__file__).resolve().parent / "dbt_parity" / "checksum.py"
    spec = importlib.util.spec_from_file_location("dbt_parity_checksum_helper", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checksum = _load_checksum_helper()


def _expected(project: str) -> dict[str, Any]:
    return json.loads((FIXTURES / project / EXPECTED_FILE).read_text())


def _known_text_differences(root: Path) -> dict[str, dict[str, tuple[str, str]]]:
    """relation -> column -> (dbt's value, wfsql's value) for the strings that spell a relation name.

    See "Known differences" in tests/dbt_parity/README.md: wfsql writes relation names in two parts
    ("schema"."identifier") and resolves a source's relative external_location against the project folder.
    Everything else in these relations must match dbt exactly.
    """
    users_csv = (root.resolve() / "external" / "users.csv").as_posix()
    return {
        "events.core_analytics.run_context": {
            "this_relation": ('"events"."core_analytics"."run_context"', '"core_analytics"."run_context"'),
            "fct_events_relation": ('"events"."core"."fct_events"', '"core"."fct_events"'),
            "users_source": ("'external/users.csv'", f"read_csv_auto('{users_csv}')"),
        },
    }


@dataclass
class StepOutcome:
    """What wfsql did for one recorded dbt step, read from the database right after it."""

    expected: dict[str, Any]  # the step as recorded from dbt
    results: list[NodeResult]
    relations: dict[str, dict[str, Any]]  # "db.schema.identifier" -> checksum.relation_summary(...)
    # relations with known text differences: checksum once dbt's values are put in, and wfsql's own values
    checksum_with_dbt_values: dict[str, str]
    own_values: dict[str, dict[str, Any]]


@dataclass
class Replay:
    root: Path
    cwd: Path
    project: Project
    steps: list[StepOutcome]


def _wfsql_command(dbt_command: list[str]) -> tuple[str, dict[str, Any] | None]:
    """`["dbt", "run", "--vars", "{max_batch: 2}"]` -> ("run", {"max_batch": 2})."""
    assert dbt_command[0] == "dbt" and dbt_command[1] in ("build", "run", "seed", "test"), dbt_command
    rest = dbt_command[2:]
    if not rest:
        return dbt_command[1], None
    assert len(rest) == 2 and rest[0] == "--vars", f"replaying {dbt_command} is not supported"
    return dbt_command[1], yaml.safe_load(rest[1])


def _read_database(db_file: Path, known: dict[str, dict[str, tuple[str, str]]]) -> tuple[dict, dict, dict]:
    con = duckdb.connect(str(db_file), read_only=True)
    try:
        catalog = con.execute("select current_database()").fetchall()[0][0]
        relations = {}
        for database, schema, identifier, _ in checksum.list_relations(con, catalog):
            if schema == STATE_SCHEMA:  # wfsql's own bookkeeping (node_state), not a dbt relation
                continue
            summary = checksum.relation_summary(con, database, schema, identifier)
            relations[summary["relation"]] = summary
        replaced, own = {}, {}
        for relation, columns in known.items():
            if relation not in relations:
                continue
            r = relations[relation]
            name = checksum.relation_sql_name(r["database"], r["schema"], r["identifier"])
            swaps = ", ".join(
                "'{}' as {}".format(dbt_value.replace("'", "''"), checksum.quote_ident(column))
                for column, (dbt_value, _) in columns.items()
            )
            with_dbt_values = f"(select * replace ({swaps}) from {name})"
            replaced[relation] = checksum.relation_checksum(con, with_dbt_values)["checksum"]
            selected = ", ".join(checksum.quote_ident(c) for c in columns)
            rows = con.execute(f"select distinct {selected} from {name}").fetchall()
            own[relation] = dict(zip(columns, rows[0], strict=True)) if len(rows) == 1 else {"rows": rows}
        return relations, replaced, own
    finally:
        con.close()


def _replay(name: str, base: Path) -> Replay:
    expected = _expected(name)
    root = base / name
    shutil.copytree(FIXTURES / name, root, ignore=shutil.ignore_patterns(EXPECTED_FILE, "target", "*.duckdb*"))
    cwd = base / "elsewhere"  # not the project: relative paths must resolve against the project folder
    cwd.mkdir()
    known = _known_text_differences(root)
    steps = []
    with pytest.MonkeyPatch.context() as patch:
        for variable in expected["env_vars_unset"]:
            patch.delenv(variable, raising=False)
        patch.chdir(cwd)
        for step in expected["steps"]:
            command, cli_vars = _wfsql_command(step["dbt_command"])
            project = Project.load(root, vars=cli_vars, console=Console(file=io.StringIO()))
            results = getattr(project, command)(RunOptions())
            relations, replaced, own = _read_database(root / expected["database_file"], known)
            steps.append(StepOutcome(step, list(results.results), relations, replaced, own))
    return Replay(root, cwd, project, steps)


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """replay(project) -> its Replay; each project is built once per module."""
    replays: dict[str, Replay] = {}

    def get(name: str) -> Replay:
        if name not in replays:
            replays[name] = _replay(name, tmp_path_factory.mktemp(f"dbt_parity_{name}"))
        return replays[name]

    return get


STEP_CASES = [
    pytest.param(project, index, id=f"{project}-{step['name']}")
    for project in PROJECTS
    for index, step in enumerate(_expected(project)["steps"])
]
RELATION_CASES = [
    pytest.param(project, index, relation["relation"], id=f"{project}-{step['name']}-{relation['relation']}")
    for project in PROJECTS
    for index, step in enumerate(_expected(project)["steps"])
    for relation in step["relations"]
]


def test_fixture_projects_are_there():
    assert {"shop", "events"} <= set(PROJECTS)


@pytest.mark.parametrize("project", PROJECTS)
def test_database_file_is_the_profile_path_in_the_project_folder(replay, project):
    """profiles.yml `path` is relative to the project folder in wfsql (to dbt's cwd in dbt)."""
    run = replay(project)
    expected = _expected(project)
    assert Path(run.project.config.database) == (run.root / expected["database_file"]).resolve()
    assert (run.root / expected["database_file"]).is_file()
    assert not list(run.cwd.iterdir()), "nothing may be written to the working directory"


@pytest.mark.parametrize(("project", "step"), STEP_CASES)
def test_same_relations_as_dbt(replay, project, step):
    """Every table and view dbt left in the file, and no others (disabled nodes, temp tables, ephemerals)."""
    outcome = replay(project).steps[step]
    want = {r["relation"]: r["type"] for r in outcome.expected["relations"]}
    got = {name: r["type"] for name, r in outcome.relations.items()}
    assert got == want


@pytest.mark.parametrize(("project", "step", "relation"), RELATION_CASES)
def test_relation_matches_dbt(replay, project, step, relation):
    run = replay(project)
    outcome = run.steps[step]
    want = next(r for r in outcome.expected["relations"] if r["relation"] == relation)
    got = outcome.relations.get(relation)
    assert got is not None, f"wfsql did not build {relation}"
    assert got["type"] == want["type"]
    assert got["columns"] == want["columns"]
    assert got["row_count"] == want["row_count"]
    known = _known_text_differences(run.root).get(relation)
    if known is None:
        assert got["checksum"] == want["checksum"], want.get("rows_as_text")
    else:
        # with dbt's spelling of the relation names put back, the content is dbt's exactly
        assert outcome.checksum_with_dbt_values[relation] == want["checksum"], want.get("rows_as_text")
        assert outcome.own_values[relation] == {column: ours for column, (_, ours) in known.items()}


@pytest.mark.parametrize(("project", "step"), STEP_CASES)
def test_test_statuses_and_failures_match_dbt(replay, project, step):
    outcome = replay(project).steps[step]
    tests = [r for r in outcome.expected["results"] if r["resource_type"] == "test"]
    want = {r["name"]: (r["status"], r["failures"]) for r in tests}
    got = {r.name: (r.status, r.failures) for r in outcome.results if r.resource_type == "test"}
    assert got == want


@pytest.mark.parametrize(("project", "step"), STEP_CASES)
def test_same_models_and_seeds_ran(replay, project, step):
    """dbt's executed models and seeds all succeed in wfsql (an unchanged view may be reused)."""
    run = replay(project)
    outcome = run.steps[step]
    want = {r["name"] for r in outcome.expected["results"] if r["resource_type"] in ("model", "seed")}
    assert all(r["status"] == "success" for r in outcome.expected["results"] if r["name"] in want)
    got = {r.name: r.status for r in outcome.results if r.resource_type in ("model", "seed")}
    assert {name: got.get(name) in ("success", "reused") for name in want} == dict.fromkeys(want, True), got
    # wfsql also reports ephemeral models (inlined, nothing built); dbt leaves them out of run_results
    nodes = run.project.compile(write_artifacts=False).nodes
    extra = {name for name in got if name not in want}
    assert all(n.config.get("materialized") == "ephemeral" for n in nodes.values() if n.name in extra)


@pytest.mark.parametrize("project", PROJECTS)
def test_manifest_matches_dbt(replay, project):
    """Enabled nodes, materializations, tags, doc-block descriptions and test definitions as in dbt."""
    expected = _expected(project)
    nodes = replay(project).project.compile(write_artifacts=False).nodes
    dbt_nodes = expected["nodes"]
    want_ids = {uid for uid, n in dbt_nodes.items() if n["resource_type"] in ("model", "seed")}
    got_ids = {uid for uid, n in nodes.items() if isinstance(n, ModelNode | SeedNode)}
    assert got_ids == want_ids
    assert not set(expected["disabled"]) & set(nodes)
    for uid in sorted(want_ids):
        want, got = dbt_nodes[uid], nodes[uid]
        if want["resource_type"] == "model":
            assert got.config.get("materialized") == want["materialized"], uid
        assert sorted(got.tags) == want["tags"], uid
        assert got.description == want["description"], uid
        assert {c.name: c.description for c in got.columns} == want["columns"], uid

    dbt_tests = {n["name"]: n for n in dbt_nodes.values() if n["resource_type"] == "test"}
    tests = {n.name: n for n in nodes.values() if isinstance(n, _TestNode)}
    assert set(tests) == set(dbt_tests)
    for name, want in dbt_tests.items():
        got = tests[name]
        assert got.test_type == want["test_type"], name
        assert got.severity == want["severity"].lower(), name
        assert got.column_name == want["column_name"], name
        if want["test_type"] == "generic":
            assert got.test_name == want["test_name"], name
            # dbt also keeps column_name among the kwargs
            assert got.kwargs == {k: v for k, v in want["test_kwargs"].items() if k != "column_name"}, name


def test_external_location_forms_and_relation_attributes(tmp_path):
    """dbt-duckdb's external_location forms, and `this.schema` / `ref(...).schema` / `.database`."""
    root = tmp_path / "mini"
    (root / "models" / "marts").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        "name: mini\nprofile: mini\nmodels:\n  mini:\n    marts:\n      +schema: marts\n"
    )
    (root / "profiles.yml").write_text("mini:\n  outputs:\n    dev: {type: duckdb, path: mini.duckdb, schema: core}\n")
    (root / "models" / "sources.yml").write_text(
        "version: 2\n"
        "sources:\n"
        "  - name: lake\n"
        "    schema: raw\n"
        "    tables:\n"
        "      - name: quoted\n"
        "        meta: {external_location: \"'data/{name}.csv'\"}\n"
        "      - name: remote\n"
        "        meta: {external_location: 's3://bucket/{schema}/{name}.parquet'}\n"
        "      - name: called\n"
        "        meta: {external_location: \"read_csv('x.csv', header = true)\"}\n"
    )
    (root / "models" / "base.sql").write_text("select 1 as id")
    (root / "models" / "marts" / "mart.sql").write_text(
        "select '{{ this.schema }}' as own, '{{ ref(\"base\").schema }}' as base_schema, "
        "'{{ this.database }}' as db from {{ ref('base') }}"
    )
    nodes = Project.load(root, console=Console(file=io.StringIO())).compile(write_artifacts=False).nodes
    sources = {n.name: n.relation_sql for n in nodes.values() if n.resource_type == "source"}
    assert sources == {
        "quoted": f"read_csv_auto('{(root.resolve() / 'data' / 'quoted.csv').as_posix()}')",
        "remote": "read_parquet('s3://bucket/raw/remote.parquet')",
        "called": "read_csv('x.csv', header = true)",
    }
    mart = nodes["model.mini.mart"]
    assert isinstance(mart, ModelNode)
    assert "'core_marts' as own, 'core' as base_schema, 'mini' as db" in mart.compiled_sql
