"""Mistakes in test declarations: each error names the YAML file, the line and the key to fix."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from conftest import load

from wfsql.errors import CompileError, CompileErrors, WfsqlError


def _schema(make_project, yaml: str, **models: str):
    files = {f"models/{name}.sql": sql for name, sql in (models or {"m": "select 1 as id, 'a' as s"}).items()}
    return make_project({**files, "models/schema.yml": yaml}, name="t")


def test_missing_column_is_an_error_naming_file_line_and_key(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests: [not_null]
              - name: idd
                tests:
                  - unique
    """,
    )
    results = load(root).build()
    by_name = {r.name: r for r in results.results}
    assert by_name["not_null_m_id"].status == "pass"
    error = by_name["unique_m_idd"]
    assert error.status == "error"
    assert "column 'idd' is not in main.m" in error.message
    assert "models/schema.yml:8" in error.message
    assert "models[0].columns[1].tests[0]" in error.message
    assert not results.success


def test_missing_column_is_an_error_unbatched_too(make_project):
    from wfsql.api import RunOptions

    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: nope
                tests: [not_null]
    """,
    )
    results = load(root).build(RunOptions(extra={"no_batch_tests": True}))
    (error,) = [r for r in results.results if r.resource_type == "test"]
    assert error.status == "error"
    assert "models/schema.yml:5 (models[0].columns[0].tests[0])" in error.message


def test_tests_for_a_missing_model_are_a_compile_error(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
          - name: orderz
            columns:
              - name: id
                tests: [not_null]
    """,
        m="select 1 as id",
        orders="select 1 as id",
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    text = str(info.value)
    assert "'orderz', which does not exist" in text
    assert "did you mean 'orders'?" in text
    assert "schema.yml:3" in text
    assert "models[1]" in text


def test_model_without_tests_may_be_missing(make_project):
    """Only declaring tests for a missing model is an error; bare descriptions are not this module's business."""
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests: [not_null]
          - name: ghost
            description: documented elsewhere
    """,
    )
    assert "test.t.not_null_m_id" in load(root).compile().nodes


def test_unknown_test_name_suggests_the_closest(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests:
                  - not_nul
    """,
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    text = str(info.value)
    assert "unknown test 'not_nul'" in text
    assert "did you mean 'not_null'?" in text
    assert "schema.yml:6" in text
    assert "models[0].columns[0].tests[0]" in text


def test_unknown_custom_test_suggests_project_macro(make_project):
    root = make_project(
        {
            "models/m.sql": "select 1 as id",
            "macros/t.sql": "{% test is_positive(model, column_name) %}select 1 where false{% endtest %}",
            "models/schema.yml": """
            models:
              - name: m
                columns:
                  - name: id
                    tests: [is_positiv]
        """,
        },
        name="t",
    )
    with pytest.raises(CompileError, match="did you mean 'is_positive'"):
        load(root).compile()


def test_arguments_that_are_not_a_mapping_are_a_clear_error(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: s
                tests:
                  - accepted_values: [a, b]
    """,
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    text = str(info.value)
    assert "one-key mapping" in text
    assert "schema.yml:6" in text and "models[0].columns[0].tests[0]" in text


def test_missing_required_argument_names_the_key(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: s
                tests:
                  - accepted_values: {}
    """,
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    text = str(info.value)
    assert "'values'" in text and "schema.yml:6" in text and "models[0].columns[0].tests[0]" in text


def test_relationships_to_missing_model(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests:
                  - relationships: {to: "ref('parents')", field: id}
    """,
        m="select 1 as id",
        parent="select 1 as id",
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    text = str(info.value)
    assert "ref('parents')" in text and "did you mean 'parent'?" in text
    assert "schema.yml:6" in text


@pytest.mark.parametrize(
    ("config", "words"),
    [("{severity: fatal}", "severity"), ("{limit: -1}", "limit"), ("{warn_if: 'above 3'}", "warn_if")],
)
def test_bad_config_values_are_compile_errors(make_project, config, words):
    root = _schema(
        make_project,
        f"""
        models:
          - name: m
            columns:
              - name: id
                tests:
                  - not_null: {config}
    """,
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    assert words in str(info.value) and "schema.yml:6" in str(info.value)


def test_several_problems_are_reported_together(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests: [not_nul, uniqe]
    """,
    )
    with pytest.raises(CompileErrors) as info:
        load(root).compile()
    assert len(info.value.errors) == 2


def test_singular_test_with_unknown_ref(make_project):
    root = make_project({"models/m.sql": "select 1 as id", "tests/t1.sql": "select * from {{ ref('mm') }}"}, name="t")
    with pytest.raises(WfsqlError) as info:
        load(root).compile()
    assert "ref('mm')" in str(info.value) and "t1.sql" in str(info.value)


def test_testing_an_unbuilt_model_says_build_it_first(make_project):
    root = _schema(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests: [not_null]
    """,
    )
    project = load(root)
    with pytest.raises(WfsqlError, match="nothing to test yet"):  # no database at all: one message, none created
        project.test()
    database = Path(project.config.database)
    assert not database.exists()
    database.parent.mkdir(parents=True, exist_ok=True)
    duckdb.connect(str(database)).close()  # a database without the model: the test itself says so
    results = load(root).test()
    (result,) = results.results
    assert result.status == "error"
    assert "does not exist" in result.message and "build" in result.message
