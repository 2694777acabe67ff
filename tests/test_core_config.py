"""The project file: defaults, paths, vars, the per-folder `models:` tree, targets, and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import database_path, load, query

from wfsql.config import load_project
from wfsql.errors import CompileError, ProjectConfigError
from wfsql.nodes import Ephemeral, ModelNode, Table, View


def test_defaults(make_project):
    root = make_project({"models/a.sql": "select 1 as x"})
    config = load_project(root)
    assert config.name == "proj"
    assert config.flavor == "wfsql"
    assert config.database == str(root.resolve() / "target" / "wfsql.duckdb")
    assert config.schema == "main"
    assert config.threads == 4
    assert config.model_paths == ("models",)
    assert config.seed_paths == ("seeds",)
    assert config.macro_paths == ("macros",)
    assert config.target_dir == root.resolve() / "target"
    assert config.target_name == "default"


def test_default_database_is_created_by_run(make_project):
    root = make_project({"models/a.sql": "select 1 as x"})
    load(root).run()
    assert database_path(root).is_file()
    assert query(root, "select x from main.a") == [(1,)]


def test_custom_paths(make_project):
    root = make_project(
        {
            "sql/m/a.sql": "select {{ double(21) }} as x",
            "csv/people.csv": "id,name\n1,ann\n",
            "jinja/double.sql": "{% macro double(v) %}{{ v * 2 }}{% endmacro %}",
            "models/ignored.sql": "this is not sql at all",
        },
        config="""
        database: out/db.duckdb
        threads: 2
        paths:
          models: [sql]
          seeds: csv
          macros: [jinja]
        """,
    )
    project = load(root)
    assert project.config.threads == 2
    assert project.config.database == str(root.resolve() / "out" / "db.duckdb")
    manifest = project.compile()
    assert {n.name for n in manifest.nodes.values()} == {"a", "people"}
    assert "select 42 as x" in manifest.nodes["model.proj.a"].compiled_sql
    project.seed()
    project.run()
    assert query(root, "select x from a", root / "out" / "db.duckdb") == [(42,)]
    assert query(root, "select name from people", root / "out" / "db.duckdb") == [("ann",)]


def test_vars_and_cli_override(make_project):
    root = make_project(
        {"models/a.sql": "select {{ var('n') }} as n, '{{ var('label', 'dflt') }}' as label"},
        config="""
        vars:
          n: 1
        """,
    )
    assert "select 1 as n, 'dflt' as label" in load(root).compile().nodes["model.proj.a"].compiled_sql
    overridden = load(root, vars={"n": 7, "label": "cli"}).compile()
    assert "select 7 as n, 'cli' as label" in overridden.nodes["model.proj.a"].compiled_sql


def test_folder_config_tree(make_project):
    root = make_project(
        {
            "models/root_model.sql": "select 1 as x",
            "models/staging/stg.sql": "select 1 as x",
            "models/staging/deep/stg_deep.sql": "{{ config(tags=['own']) }}select 1 as x",
            "models/marts/mart.sql": "select 1 as x",
            "models/marts/mart_view.sql": "{{ config(materialized='view') }}select 1 as x",
            "models/marts/mart_eph.sql": "{{ config(materialized='ephemeral') }}select 1 as x",
        },
        config="""
        models:
          +tags: [everywhere]
          staging:
            +materialized: table
            +tags: [staging]
            deep:
              +tags: deep
          marts:
            +materialized: table
            +schema: analytics
        """,
    )
    manifest = load(root).compile()
    nodes = {n.name: n for n in manifest.models()}
    assert isinstance(nodes["root_model"].kind, View)
    assert nodes["root_model"].tags == ("everywhere",)
    assert isinstance(nodes["stg"].kind, Table)
    assert nodes["stg"].tags == ("everywhere", "staging")
    assert isinstance(nodes["stg_deep"].kind, Table)
    assert nodes["stg_deep"].tags == ("everywhere", "staging", "deep", "own")
    assert nodes["mart"].relation.schema == "analytics"
    assert nodes["root_model"].relation.schema == "main"
    # config() in the file wins over the folder default
    assert isinstance(nodes["mart_view"].kind, View)
    assert isinstance(nodes["mart_eph"].kind, Ephemeral)


def test_custom_schema_is_created_on_run(make_project):
    root = make_project(
        {"models/marts/mart.sql": "select 1 as x"},
        config="""
        models:
          marts:
            +schema: analytics
        """,
    )
    load(root).run()
    assert query(root, "select x from analytics.mart") == [(1,)]


def test_folder_tree_nested_under_project_name(make_project):
    """dbt's spelling (`models: {proj: {folder: ...}}`) works in wfsql_project.yml too."""
    root = make_project(
        {"models/staging/stg.sql": "select 1 as x"},
        config="""
        models:
          proj:
            staging:
              +materialized: table
        """,
    )
    node = load(root).compile().nodes["model.proj.stg"]
    assert isinstance(node, ModelNode) and isinstance(node.kind, Table)


TARGETS = """
targets:
  dev:
    database: target/dev.duckdb
  prod:
    database: target/prod.duckdb
    threads: 3
    schema: prod_schema
default_target: dev
"""


def test_named_targets(make_project):
    root = make_project({"models/a.sql": "select 1 as x"}, config=TARGETS)
    dev = load_project(root)
    assert dev.target_name == "dev"
    assert dev.database.endswith("dev.duckdb")
    prod = load_project(root, target="prod")
    assert prod.target_name == "prod"
    assert prod.database == str(root.resolve() / "target" / "prod.duckdb")
    assert prod.threads == 3
    assert prod.schema == "prod_schema"
    load(root, target="prod").run()
    assert (root / "target" / "prod.duckdb").exists()
    assert not (root / "target" / "dev.duckdb").exists()
    assert query(root, "select x from prod_schema.a", root / "target" / "prod.duckdb") == [(1,)]


def test_unknown_target(make_project):
    root = make_project({}, config=TARGETS)
    with pytest.raises(ProjectConfigError) as info:
        load_project(root, target="prd")
    message = str(info.value)
    assert "unknown target 'prd'" in message
    assert "did you mean 'prod'" in message
    assert "wfsql_project.yml" in message


def test_default_target_must_exist(make_project):
    root = make_project({}, config="default_target: prod\n")
    with pytest.raises(ProjectConfigError, match="unknown target 'prod'"):
        load_project(root)


def test_target_without_targets_block(make_project):
    root = make_project({})
    with pytest.raises(ProjectConfigError, match="unknown target 'prod'"):
        load_project(root, target="prod")


def _error_for(make_project, config: str) -> str:
    root = make_project({}, config=config)
    with pytest.raises(ProjectConfigError) as info:
        load_project(root)
    return str(info.value)


def test_unknown_top_level_key(make_project):
    message = _error_for(make_project, "threads: 2\nvarz:\n  a: 1\n")
    assert "wfsql_project.yml:3" in message  # name is line 1, threads line 2, varz line 3
    assert "varz (line 3): unknown key" in message
    assert "did you mean 'vars'" in message


def test_unknown_nested_key_names_path_and_line(make_project):
    message = _error_for(make_project, "paths:\n  models: [models]\n  modles: [x]\n")
    assert "paths.modles (line 4)" in message
    assert "did you mean 'models'" in message
    assert str(Path("wfsql_project.yml")) in message


def test_unknown_key_in_target(make_project):
    message = _error_for(make_project, "targets:\n  prod:\n    databse: x.duckdb\n")
    assert "targets.prod.databse (line 4)" in message
    assert "did you mean 'database'" in message


def test_wrong_type(make_project):
    message = _error_for(make_project, "threads: many\n")
    assert "threads (line 2)" in message
    assert "integer" in message


def test_wrong_type_of_vars(make_project):
    message = _error_for(make_project, "vars: [a, b]\n")
    assert "vars (line 2)" in message
    assert "dictionary" in message


def test_unknown_materialization_in_tree(make_project):
    message = _error_for(make_project, "models:\n  staging:\n    +materialized: tabel\n")
    assert "models.staging.+materialized: unknown materialization 'tabel'" in message
    assert "wfsql_project.yml:4" in message


def test_unknown_config_in_tree_suggests(make_project):
    message = _error_for(make_project, "models:\n  +materialised: table\n")
    assert "unknown config 'models.+materialised'" in message
    assert "did you mean 'materialized'" in message


def test_unknown_materialization_in_model_config(make_project):
    root = make_project({"models/a.sql": "{{ config(materialized='tabel') }}select 1 as x"})
    with pytest.raises(CompileError) as info:
        load(root).compile()
    message = str(info.value)
    assert "unknown materialization 'tabel'" in message
    assert "a.sql" in message


def test_missing_project_file(tmp_path):
    with pytest.raises(ProjectConfigError, match=r"no wfsql_project\.yml"):
        load_project(tmp_path)


def test_invalid_project_name(make_project):
    root = make_project({"wfsql_project.yml": "name: my-project\n"})
    with pytest.raises(ProjectConfigError, match=r"name \(line 1\)"):
        load_project(root)


def test_config_precedence_folder_then_properties_then_file(make_project):
    root = make_project(
        {
            "models/sub/a.sql": "select 1 as x",
            "models/sub/b.sql": "{{ config(materialized='view', tags=['file']) }}select 1 as x",
            "models/sub/disabled.sql": "select 1 as x",
            "models/schema.yml": """
                models:
                  - name: a
                    config:
                      materialized: incremental
                      tags: [props]
                  - name: b
                    config:
                      materialized: incremental
                      tags: [props]
                """,
        },
        config="""
        models:
          sub:
            +materialized: table
            +tags: [folder]
            disabled:
              +enabled: false
        """,
    )
    manifest = load(root).compile()
    a, b = manifest.nodes["model.proj.a"], manifest.nodes["model.proj.b"]
    assert a.materialized == "incremental" and a.tags == ("folder", "props")
    assert b.materialized == "view" and b.tags == ("folder", "props", "file")
    assert "model.proj.disabled" not in manifest.nodes


@pytest.mark.parametrize(("folder", "shown"), [("2024", "int 2024"), ("off", "bool False")])
def test_folder_name_yaml_reads_as_a_number_or_boolean(make_project, folder, shown):
    root = make_project({f"models/{folder}/a.sql": "select 1 as x"}, config=f"models:\n  {folder}:\n    +tags: [t]\n")
    with pytest.raises(ProjectConfigError) as info:
        load_project(root)
    assert f"YAML read it as {shown}" in str(info.value)
    assert "wfsql_project.yml:3" in str(info.value)
    # quoted, it is a folder like any other
    (root / "wfsql_project.yml").write_text(f"name: proj\nmodels:\n  '{folder}':\n    +tags: [t]\n")
    assert load(root).compile().nodes["model.proj.a"].tags == ("t",)


def test_vars_with_non_string_keys(make_project):
    root = make_project({"models/a.sql": "select '{{ var('m')[1] }}' as v"}, config="vars:\n  m:\n    1: one\n")
    assert "select 'one' as v" in load(root).compile().nodes["model.proj.a"].compiled_sql
