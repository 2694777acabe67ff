"""Test configuration: severity, warn_if/error_if, limit, where, store_failures; custom and singular tests."""

from __future__ import annotations

import pytest
from conftest import load, query, statuses, write_files

from wfsql.api import RunOptions
from wfsql.errors import WfsqlError

# v is null on 10 of 100 rows (ids 0, 10, ..., 90); 4 of them have id > 50.
HUNDRED = "select range as id, case when range % 10 = 0 then null else range end as v from range(100)"


def _tests_only(results) -> dict:
    return {r.name: r for r in results.results if r.resource_type == "test"}


def _project(make_project, tests_yaml: str, model: str = HUNDRED, **files: str):
    extra = {k.replace("__", "/") + ".sql": v for k, v in files.items()}
    return make_project({"models/m.sql": model, "models/schema.yml": tests_yaml, **extra}, name="t")


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_severity_warn_reports_warn_and_succeeds(make_project, batched):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {severity: warn}
    """,
    )
    results = load(root).build(RunOptions(extra={} if batched else {"no_batch_tests": True}))
    (test,) = _tests_only(results).values()
    assert (test.status, test.failures) == ("warn", 10)
    assert "configured to warn if !=0" in test.message
    assert results.success


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("select * from (values (1), (null), (null), (null)) as t(v)", ("warn", 3)),  # 3 is not > 5
        (HUNDRED, ("fail", 10)),
        ("select 1 as v", ("pass", 0)),
    ],
    ids=["three_warn", "ten_fail", "zero_pass"],
)
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_error_if_threshold(make_project, model, expected, batched):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null:
                      config: {error_if: ">5"}
    """,
        model=model,
    )
    results = load(root).build(RunOptions(extra={} if batched else {"no_batch_tests": True}))
    (test,) = _tests_only(results).values()
    assert (test.status, test.failures) == expected
    assert results.success == (expected[0] != "fail")


def test_warn_if_threshold_below_it_passes(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {warn_if: ">10", error_if: ">20"}
                  - not_null: {warn_if: ">=10", error_if: ">20", name: nn_at_ten}
    """,
    )
    tests = _tests_only(load(root).build())
    assert (tests["not_null_m_v"].status, tests["not_null_m_v"].failures) == ("pass", 10)
    assert tests["nn_at_ten"].status == "warn"


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_limit_caps_the_failure_count(make_project, batched):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {limit: 3}
    """,
    )
    (test,) = _tests_only(load(root).build(RunOptions(extra={} if batched else {"no_batch_tests": True}))).values()
    assert (test.status, test.failures) == ("fail", 3)


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_where_filters_the_tested_rows(make_project, batched):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null:
                      config: {where: "id > 50"}
                  - not_null:
                      name: nn_where_clean
                      config: {where: "id % 10 != 0"}
    """,
    )
    tests = _tests_only(load(root).build(RunOptions(extra={} if batched else {"no_batch_tests": True})))
    assert (tests["not_null_m_v"].status, tests["not_null_m_v"].failures) == ("fail", 4)
    assert (tests["nn_where_clean"].status, tests["nn_where_clean"].failures) == ("pass", 0)


def test_store_failures_writes_a_queryable_table(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {store_failures: true}
    """,
    )
    (test,) = _tests_only(load(root).build()).values()
    assert test.status == "fail"
    table = "main_test_failures.not_null_m_v"
    assert table in test.message
    assert test.adapter_response["failures_table"] == table
    rows = query(root, f"select id, v from {table} order by id")
    assert rows == [(i, None) for i in range(0, 100, 10)]


def test_store_failures_table_is_emptied_when_the_test_passes_again(make_project):
    """A stale failures table would show rows that no longer fail; dbt recreates it on every run."""
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {store_failures: true}
    """,
    )
    assert not load(root).build().success
    assert query(root, "select count(*) from main_test_failures.not_null_m_v") == [(10,)]
    write_files(root, {"models/m.sql": "select range as id, range as v from range(100)"})
    results = load(root).build()
    assert results.success
    (test,) = _tests_only(results).values()
    assert test.status == "pass"
    assert query(root, "select count(*) from main_test_failures.not_null_m_v") == [(0,)]


def test_store_failures_respects_limit(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {store_failures: true, limit: 2}
    """,
    )
    load(root).build()
    assert query(root, "select count(*) from main_test_failures.not_null_m_v") == [(2,)]


CUSTOM_MACRO = """
{% test at_most(model, column_name, value, inclusive=true) %}
select * from {{ model }}
where {{ column_name }} {% if inclusive %}>{% else %}>={% endif %} {{ value }}
{% endtest %}
"""


def test_custom_generic_test_with_arguments(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: id
                tests:
                  - at_most: {value: 95}
                  - at_most: {value: 99, inclusive: false}
                  - at_most: {value: 99}
    """,
        macros__checks=CUSTOM_MACRO,
    )
    tests = _tests_only(load(root).build())
    # dbt names: <test>_<model>_<column>__<argument values sorted by key>
    assert (tests["at_most_m_id__95"].status, tests["at_most_m_id__95"].failures) == ("fail", 4)
    assert (tests["at_most_m_id__False__99"].status, tests["at_most_m_id__False__99"].failures) == ("fail", 1)
    assert (tests["at_most_m_id__99"].status, tests["at_most_m_id__99"].failures) == ("pass", 0)


def test_custom_generic_test_at_model_level_and_with_ref_argument(make_project):
    root = make_project(
        {
            "models/m.sql": HUNDRED,
            "models/small.sql": "select range as id from range(10)",
            "macros/same_count.sql": """
            {% test same_count(model, other) %}
            select * from (select count(*) as n from {{ model }}) as a, (select count(*) as n from {{ other }}) as b
            where a.n != b.n
            {% endtest %}
        """,
            "models/schema.yml": """
            models:
              - name: m
                tests:
                  - same_count: {other: "ref('small')", name: m_vs_small}
                  - same_count: {other: "ref('m')", name: m_vs_m}
        """,
        },
        name="t",
    )
    manifest = load(root).compile()
    node = manifest.nodes["test.t.m_vs_small"]
    assert set(node.depends_on) == {"model.t.m", "model.t.small"}
    tests = _tests_only(load(root).build())
    assert (tests["m_vs_small"].status, tests["m_vs_small"].failures) == ("fail", 1)
    assert tests["m_vs_m"].status == "pass"


def test_singular_tests_pass_and_fail(make_project):
    root = _project(
        make_project,
        "models:\n  - name: m\n",
        **{
            "tests__big_ids": "select * from {{ ref('m') }} where id >= 97",
            "tests__sub/no_negative": "select * from {{ ref('m') }} where id < 0",
            "tests__warned": "{{ config(severity='warn') }}\nselect * from {{ ref('m') }} where v is null",
        },
    )
    results = load(root).build()
    tests = _tests_only(results)
    assert (tests["big_ids"].status, tests["big_ids"].failures) == ("fail", 3)
    assert (tests["no_negative"].status, tests["no_negative"].failures) == ("pass", 0)
    assert (tests["warned"].status, tests["warned"].failures) == ("warn", 10)
    manifest = load(root).compile()
    assert manifest.nodes["test.t.big_ids"].depends_on == ("model.t.m",)
    assert not results.success


def test_disabled_test_is_not_collected(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {config: {enabled: false}}
                  - unique
    """,
    )
    assert set(statuses(load(root).build())) == {"m", "unique_m_v"}


def test_bad_threshold_is_a_compile_error_naming_the_key(make_project):
    root = _project(
        make_project,
        """
        models:
          - name: m
            columns:
              - name: v
                tests:
                  - not_null: {error_if: "lots"}
    """,
    )
    with pytest.raises(WfsqlError) as info:
        load(root).compile()
    text = str(info.value)
    assert "schema.yml:6" in text
    assert "error_if" in text and "'lots'" in text
    assert "models[0].columns[0].tests[0]" in text
