"""Each bundled generic test fails on a table that breaks it, with dbt's failure count, and passes on a clean one.

The same data is run batched (one scan per relation) and one query per test: the counts must agree, and the
batched run must issue fewer queries.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import load, statuses

import wfsql.adapter
from wfsql.api import RunOptions

# id: 3 nulls. dup: 1 x3, 2 x2, 3, null x2 -> 2 duplicated values (nulls do not count).
# status: x and y are not accepted (null is ignored) -> 2 distinct bad values.
# customer_id: 99, 99, 98 have no customer (null is ignored) -> 3 orphan rows.
# amount: -1 and -2 break `>= 0` (null is neither true nor false) -> 2 rows.
# (k1, k2): (1, x) x3 and (2, y) x2 -> 2 duplicated combinations. 8 rows in all.
BAD_ROWS = """
select * from (values
    (1,    1,    'a',  10,   5,    1, 'x'),
    (2,    1,    'a',  10,   -1,   1, 'x'),
    (3,    1,    'b',  99,   -2,   1, 'x'),
    (4,    2,    'x',  99,   null, 2, 'y'),
    (null, 2,    'x',  98,   0,    2, 'y'),
    (null, 3,    'y',  null, 1,    3, 'z'),
    (null, null, null, 10,   2,    4, 'z'),
    (8,    null, 'a',  11,   3,    5, 'w')
) as t(id, dup, status, customer_id, amount, k1, k2)
"""
GOOD_ROWS = """
select * from (values
    (1, 1, 'a', 10, 5, 1, 'x'),
    (2, 2, 'b', 11, 0, 1, 'y'),
    (3, 3, 'a', null, null, 2, 'x'),
    (4, null, null, 10, 7, 2, 'y')
) as t(id, dup, status, customer_id, amount, k1, k2)
"""


def _model_yaml(name: str, min_rows: int, max_rows: int) -> str:
    return f"""
  - name: {name}
    tests:
      - row_count: {{min: {min_rows}, max: {max_rows}}}
      - unique_combination:
          combination_of_columns: [k1, k2]
    columns:
      - name: id
        tests: [not_null]
      - name: dup
        tests: [unique]
      - name: status
        data_tests:
          - accepted_values: {{values: [a, b]}}
      - name: customer_id
        tests:
          - relationships: {{to: "ref('customers')", field: id}}
      - name: amount
        tests:
          - expression_is_true: {{expression: ">= 0"}}
"""


GENERIC_PROJECT = {
    "models/customers.sql": "select * from (values (10, 'ann'), (11, 'bob')) as t(id, name)",
    "models/bad.sql": BAD_ROWS,
    "models/good.sql": GOOD_ROWS,
    "models/too_few.sql": "select * from range(3) as t(id)",
    "models/schema.yml": "models:\n"
    + _model_yaml("bad", 1, 100)
    + _model_yaml("good", 1, 100)
    + """
  - name: too_few
    tests:
      - row_count: {min: 10}
      - row_count: {max: 2, name: too_few_max}
      - row_count: {min: 1, max: 3, name: too_few_between}
""",
}

# dbt's failure counts for `bad` (see BAD_ROWS).
EXPECTED_BAD = {
    "not_null_bad_id": 3,
    "unique_bad_dup": 2,
    "accepted_values_bad_status__a__b": 2,
    "relationships_bad_customer_id__id__ref_customers_": 3,
    "expression_is_true_bad_amount___0": 2,
    "unique_combination_bad__k1__k2": 2,
}


@pytest.fixture
def generic_root(make_project) -> Path:
    root = make_project(GENERIC_PROJECT, name="t")
    results = load(root).run()
    assert results.success, [r.message for r in results.results]
    return root


@pytest.fixture
def count_queries(monkeypatch) -> Iterator[list[str]]:
    """Every SQL string sent through DuckDBAdapter.execute during the test."""
    seen: list[str] = []
    original = wfsql.adapter.DuckDBAdapter.execute

    def counting(self, sql, parameters=None):
        seen.append(sql)
        return original(self, sql, parameters)

    monkeypatch.setattr(wfsql.adapter.DuckDBAdapter, "execute", counting)
    yield seen


def _by_name(results) -> dict:
    return {r.name: r for r in results.results}


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_each_generic_test_fails_with_dbt_count(generic_root, batched):
    extra = {} if batched else {"no_batch_tests": True}
    results = _by_name(load(generic_root).test(RunOptions(extra=extra)))
    for name, count in EXPECTED_BAD.items():
        assert results[name].status == "fail", (name, results[name].message)
        assert results[name].failures == count, (name, results[name].failures)
        assert f"got {count} failing row(s)" in results[name].message
    # row_count: one failing row when out of range, zero inside it
    assert (results["row_count_too_few__10"].status, results["row_count_too_few__10"].failures) == ("fail", 1)
    assert (results["too_few_max"].status, results["too_few_max"].failures) == ("fail", 1)
    assert (results["too_few_between"].status, results["too_few_between"].failures) == ("pass", 0)
    assert results["row_count_bad__100__1"].status == "pass"


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "one_by_one"])
def test_each_generic_test_passes_on_clean_table(generic_root, batched):
    extra = {} if batched else {"no_batch_tests": True}
    results = load(generic_root).test(RunOptions(select=("good",), extra=extra))
    got = statuses(results)
    assert len(got) == 7, got
    assert set(got.values()) == {"pass"}, got
    assert all(r.failures == 0 for r in results.results)


def test_batched_counts_equal_unbatched_counts(generic_root):
    batched = load(generic_root).test()
    single = load(generic_root).test(RunOptions(extra={"no_batch_tests": True}))
    counts = {r.name: (r.status, r.failures) for r in batched.results}
    assert counts == {r.name: (r.status, r.failures) for r in single.results}
    assert len(counts) == 17


def test_batching_issues_fewer_queries(generic_root, count_queries):
    load(generic_root).test(RunOptions(select=("good",)))
    batched = list(count_queries)
    count_queries.clear()
    load(generic_root).test(RunOptions(select=("good",), extra={"no_batch_tests": True}))
    single = list(count_queries)
    scans = [sql for sql in batched if '"main"."good"' in sql]
    # one aggregate answers not_null, accepted_values, expression_is_true and row_count on `good`;
    # unique, relationships and unique_combination run alone
    (aggregate,) = [sql for sql in scans if " as c0" in sql]
    assert " as c3 " in aggregate and " as c4 " not in aggregate
    assert len(scans) == 4, scans
    assert len([sql for sql in single if '"main"."good"' in sql]) == 7
    assert len(batched) < len(single)


def test_a_test_on_a_missing_column_does_not_break_the_batch(make_project, count_queries):
    root = make_project(
        {
            "models/m.sql": "select range as id, 'a' as s from range(5)",
            "models/schema.yml": """
                models:
                  - name: m
                    columns:
                      - name: id
                        tests:
                          - not_null
                          - expression_is_true: {expression: ">= 0"}
                      - name: s
                        tests:
                          - accepted_values: {values: [a]}
                      - name: nope
                        tests: [not_null]
            """,
        },
        name="t",
    )
    assert load(root).run().success
    count_queries.clear()
    got = statuses(load(root).test())
    assert got.pop("not_null_m_nope") == "error"
    assert set(got.values()) == {"pass"}
    scans = [sql for sql in count_queries if '"main"."m"' in sql]
    assert len(scans) == 1, scans  # the three valid tests share one scan; nothing falls back


def test_unique_counts_values_not_rows(make_project):
    """dbt's unique returns one row per duplicated value: 7 copies of one value is 1 failure, not 6 or 7."""
    root = make_project(
        {
            "models/m.sql": "select 1 as v from range(7) union all select 2",
            "models/schema.yml": "models:\n  - name: m\n    columns:\n      - name: v\n        tests: [unique]\n",
        },
        name="t",
    )
    for extra in ({}, {"no_batch_tests": True}):
        results = load(root).build(RunOptions(extra=extra))
        (test,) = [r for r in results.results if r.resource_type == "test"]
        assert (test.status, test.failures) == ("fail", 1)


def test_accepted_values_unquoted_numbers(make_project):
    root = make_project(
        {
            "models/m.sql": "select * from (values (1), (2), (3), (3), (4)) as t(n)",
            "models/schema.yml": """
                models:
                  - name: m
                    columns:
                      - name: n
                        tests:
                          - accepted_values: {values: [1, 2], quote: false}
            """,
        },
        name="t",
    )
    for extra in ({}, {"no_batch_tests": True}):
        results = load(root).build(RunOptions(extra=extra))
        (test,) = [r for r in results.results if r.resource_type == "test"]
        assert (test.status, test.failures) == ("fail", 2)  # 3 and 4


def test_project_override_of_a_bundled_test_is_not_batched_with_the_bundled_logic(make_project):
    """A project's own `not_null` (here: empty strings count as missing) must give the same count batched."""
    root = make_project(
        {
            "models/m.sql": "select * from (values (1, ''), (2, null), (3, 'x')) as t(id, s)",
            "macros/strict.sql": """
                {% test not_null(model, column_name) %}
                select * from {{ model }} where {{ column_name }} is null or {{ column_name }} = ''
                {% endtest %}
            """,
            "models/schema.yml": "models:\n  - name: m\n    columns:\n      - name: s\n        tests: [not_null]\n",
        },
        name="t",
    )
    assert load(root).run().success
    for extra in ({}, {"no_batch_tests": True}):
        (test,) = load(root).test(RunOptions(extra=extra)).results
        assert (test.status, test.failures) == ("fail", 2), extra


def test_jinja_in_arguments_is_rendered_and_does_not_break_the_batch(make_project, count_queries):
    """An argument such as `expression: "> {{ var('floor') }}"` is rendered in the test's SQL; the batched
    aggregate only sees the YAML text, so such a test must run alone rather than poison the shared scan."""
    root = make_project(
        {
            "models/m.sql": "select range as id from range(10)",
            "models/schema.yml": """
                models:
                  - name: m
                    columns:
                      - name: id
                        tests:
                          - not_null
                          - expression_is_true: {expression: ">= {{ var('floor') }}"}
            """,
        },
        name="t",
        config="vars:\n  floor: 3\n",
    )
    assert load(root).run().success
    for extra in ({}, {"no_batch_tests": True}):
        count_queries.clear()
        got = {r.name: (r.status, r.failures) for r in load(root).test(RunOptions(extra=extra)).results}
        assert got == {"not_null_m_id": ("pass", 0), "expression_is_true_m_id___var_floor_": ("fail", 3)}
        assert not [sql for sql in count_queries if "{{" in sql]
