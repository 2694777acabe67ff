"""Errors users get: each names the file, the line (and column), and shows the offending line."""

from __future__ import annotations

import pytest
from conftest import load, statuses

from wfsql.errors import (
    CompileError,
    CompileErrors,
    DependencyError,
    JinjaRenderError,
    ProjectConfigError,
    SqlSyntaxError,
    WfsqlError,
    YamlError,
)


def test_cycle_prints_the_path(make_project):
    root = make_project(
        {
            "models/start.sql": "select 1 as id",
            "models/alpha.sql": "select * from {{ ref('beta') }} join {{ ref('start') }} using (id)",
            "models/beta.sql": "select * from {{ ref('alpha') }}",
        }
    )
    with pytest.raises(DependencyError) as info:
        load(root).compile()
    message = str(info.value)
    assert "dependency cycle:" in message
    assert "alpha (models/alpha.sql)" in message
    assert "beta (models/beta.sql)" in message
    path = message.split("dependency cycle: ", 1)[1].splitlines()[0]
    names = [part.split(" (")[0] for part in path.split(" -> ")]
    assert names[0] == names[-1] and set(names) == {"alpha", "beta"}
    assert "start" not in names


def test_self_reference_is_not_a_cycle(make_project):
    """ref() to the model itself is `this`, not a dependency (dbt's incremental idiom)."""
    root = make_project({"models/a.sql": "{{ config(materialized='table') }}select 1 as id -- {{ ref('a') }}"})
    assert load(root).compile().dag.parents("model.proj.a") == ()


def test_unknown_ref_with_did_you_mean(make_project):
    root = make_project(
        {
            "models/customers.sql": "select 1 as id",
            "models/orders.sql": "select *\nfrom {{ ref('customrs') }}",
        }
    )
    with pytest.raises(DependencyError) as info:
        load(root).compile()
    message = str(info.value)
    assert "ref('customrs'): no model or seed named 'customrs'" in message
    assert "did you mean 'customers'?" in message
    assert "orders.sql:2" in message
    assert "from {{ ref('customrs') }}" in message  # the snippet
    assert info.value.node == "model orders"


def test_unknown_source(make_project):
    root = make_project(
        {
            "models/a.sql": "select * from {{ source('raw', 'evnts') }}",
            "models/src.yml": "sources:\n  - name: raw\n    tables:\n      - name: events\n",
        }
    )
    with pytest.raises(DependencyError) as info:
        load(root).compile()
    assert "no source named 'raw.evnts'" in str(info.value)
    assert "did you mean 'raw.events'" in str(info.value)


def test_several_problems_are_reported_together(make_project):
    root = make_project(
        {
            "models/a.sql": "select * from {{ ref('nope1') }}",
            "models/b.sql": "select * from {{ ref('nope2') }}",
        }
    )
    with pytest.raises(CompileErrors) as info:
        load(root).compile()
    assert len(info.value.errors) == 2
    assert "nope1" in str(info.value) and "nope2" in str(info.value)


def test_duplicate_model_names_name_both_files(make_project):
    root = make_project(
        {
            "models/staging/orders.sql": "select 1 as id",
            "models/marts/orders.sql": "select 2 as id",
        }
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    message = str(info.value)
    assert "two models are named 'orders'" in message
    assert "models/staging/orders.sql" in message
    assert "models/marts/orders.sql" in message


def test_model_and_seed_with_the_same_name(make_project):
    root = make_project({"models/people.sql": "select 1 as id", "seeds/people.csv": "id\n1\n"})
    with pytest.raises(CompileError) as info:
        load(root).compile()
    assert "a model and a seed are both named 'people'" in str(info.value)
    assert "seeds/people.csv" in str(info.value)


def test_two_models_building_one_relation(make_project):
    root = make_project(
        {
            "models/a.sql": "{{ config(alias='shared') }}select 1 as v",
            "models/b.sql": "{{ config(alias='shared', materialized='table') }}select 2 as v",
            "models/c.sql": "{{ config(alias='other', materialized='ephemeral') }}select 3 as v",
            "models/other.sql": "select 4 as v",  # an ephemeral builds nothing, so no clash with c
        }
    )
    with pytest.raises(CompileError) as info:
        load(root).compile()
    message = str(info.value)
    assert "models/a.sql and models/b.sql both build the relation main.shared" in message


def test_names_differing_only_in_case(make_project):
    root = make_project({"models/Orders.sql": "select 1 as v", "models/orders.sql": "select 2 as v"})
    with pytest.raises(CompileError, match="both build the relation main"):
        load(root).compile()


def test_jinja_syntax_error(make_project):
    root = make_project(
        {
            "models/a.sql": """
                select 1 as id
                {% if var('x', 1) == 1 %}
                where true
                {% endfor %}
                """
        }
    )
    with pytest.raises(JinjaRenderError) as info:
        load(root).compile()
    error = info.value
    assert error.location is not None and str(error.location.path).endswith("models/a.sql")
    assert error.location.line == 4
    message = str(error)
    assert "a.sql:4" in message
    assert "endfor" in message
    assert "> 4 | {% endfor %}" in message  # the snippet marks the offending line


def test_jinja_undefined_variable(make_project):
    root = make_project({"models/a.sql": "select 1 as id,\n  2 as two,\n  {{ not_defined_anywhere }} as x\n"})
    with pytest.raises(JinjaRenderError) as info:
        load(root).compile()
    error = info.value
    message = str(error)
    assert "not_defined_anywhere" in message
    assert "is undefined" in message
    assert error.location is not None and error.location.line == 3
    assert "a.sql:3" in message
    assert "> 3 |   {{ not_defined_anywhere }} as x" in message
    assert error.node == "model a"


def test_jinja_error_inside_a_macro_points_at_the_model_line(make_project):
    root = make_project(
        {
            "macros/m.sql": "{% macro broken() %}{{ also_undefined.attr }}{% endmacro %}",
            "models/a.sql": "select 1 as id,\n{{ broken() }} as x",
        }
    )
    with pytest.raises(JinjaRenderError) as info:
        load(root).compile()
    assert "also_undefined" in str(info.value)
    assert info.value.location is not None and info.value.location.line == 2


def test_sql_syntax_error_has_line_and_column(make_project):
    root = make_project({"models/a.sql": "select 1 as id,\n  2 as two\nfrom (select 1) t\nwhere id = = 3\n"})
    with pytest.raises(SqlSyntaxError) as info:
        load(root).compile()
    error = info.value
    assert error.location is not None
    assert str(error.location.path).endswith("models/a.sql")
    assert error.location.line == 4
    assert error.location.column is not None and error.location.column >= 10
    message = str(error)
    assert f"a.sql:4:{error.location.column}" in message
    assert "> 4 | where id = = 3" in message
    assert "^" in message


def test_sql_that_is_not_a_query(make_project):
    root = make_project({"models/a.sql": "create table t as select 1"})
    with pytest.raises(SqlSyntaxError, match="a model is a SELECT query, found CREATE"):
        load(root).compile()


def test_two_statements(make_project):
    root = make_project({"models/a.sql": "select 1; select 2"})
    with pytest.raises(SqlSyntaxError, match="found 2 statements"):
        load(root).compile()


def test_database_error_at_run_time(make_project):
    root = make_project(
        {
            "models/bad.sql": "{{ config(materialized='table') }}select cast('not a number' as integer) as n",
            "models/after_bad.sql": "select * from {{ ref('bad') }}",
            "models/fine.sql": "select 1 as x",
        }
    )
    results = load(root).run()
    assert not results.success
    assert statuses(results) == {"bad": "error", "after_bad": "skipped", "fine": "success"}
    bad = next(r for r in results.results if r.name == "bad")
    assert "model bad failed in DuckDB" in bad.message
    assert "Conversion Error" in bad.message
    assert "target/compiled/proj/models/bad.sql" in bad.message
    assert (root / "target" / "compiled" / "proj" / "models" / "bad.sql").is_file()
    skipped = next(r for r in results.results if r.name == "after_bad")
    assert "upstream bad failed" in skipped.message


def test_a_model_selected_before_its_parent_exists_says_how_to_build_both(make_project):
    from wfsql.api import RunOptions

    root = make_project(
        {
            "models/parent_table.sql": "{{ config(materialized='table') }}select 1 as n",
            "models/child.sql": "{{ config(materialized='table') }}select n + 1 as m from {{ ref('parent_table') }}",
        }
    )
    results = load(root).run(RunOptions(select=["child"]))
    assert not results.success
    message = next(r for r in results.results if r.name == "child").message
    assert "does not exist" in message  # DuckDB's own words stay
    assert "model parent_table (which child reads) is not built in this database" in message
    assert "wfsql build -s +child" in message and "target/compiled/proj/models/child.sql" in message
    # ... and the suggested selection works.
    assert load(root).build(RunOptions(select=["+child"])).success


def test_malformed_project_yaml(make_project):
    root = make_project({"wfsql_project.yml": "name: proj\nvars:\n  a: 1\n b: [unclosed\n"})
    with pytest.raises(YamlError) as info:
        load(root)
    error = info.value
    assert error.location is not None
    assert str(error.location.path).endswith("wfsql_project.yml")
    assert error.location.line == 4
    assert "wfsql_project.yml:4" in str(error)
    assert "  > 4 |  b: [unclosed" in error.render()  # the offending line itself, marked


def test_an_unclosed_bracket_names_the_line_it_opened_on(make_project):
    root = make_project({"wfsql_project.yml": "name: proj\nvars:\n  tags: [one, two\n  other: 1\n"})
    with pytest.raises(YamlError) as info:
        load(root)
    rendered = info.value.render()
    assert "in what begins on line 3" in rendered and "  > 4 |   other: 1" in rendered


def test_malformed_properties_yaml(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/schema.yml": "models:\n  - name: a\n    description: 'unterminated\n",
        }
    )
    with pytest.raises(YamlError) as info:
        load(root).compile()
    assert str(info.value.location.path).endswith("models/schema.yml")
    assert info.value.location.line is not None and info.value.location.line >= 3


def test_properties_entry_without_name(make_project):
    root = make_project(
        {"models/a.sql": "select 1 as id", "models/schema.yml": "models:\n  - name: a\n  - description: x\n"}
    )
    with pytest.raises(YamlError) as info:
        load(root).compile()
    assert "models[1] needs a `name:`" in str(info.value)
    assert "schema.yml:3" in str(info.value)


def test_project_file_that_is_not_a_mapping(make_project):
    root = make_project({"wfsql_project.yml": "- just\n- a list\n"})
    with pytest.raises(ProjectConfigError, match="must be a mapping"):
        load(root)


def test_jinja_syntax_error_in_a_macro_file(make_project):
    root = make_project(
        {
            "macros/util.sql": "{% macro ok() %}1{% endmacro %}\n\n{% macro broken() %}\n{{ 1 + }}\n{% endmacro %}\n",
            "models/a.sql": "select {{ ok() }} as x",
        }
    )
    with pytest.raises(JinjaRenderError) as info:
        load(root).compile()
    assert info.value.location is not None
    assert str(info.value.location.path).endswith("macros/util.sql")
    assert info.value.location.line == 4
    assert "> 4 | {{ 1 + }}" in str(info.value)


def test_show_unknown_model_suggests(make_project):
    root = make_project({"models/orders.sql": "select 1 as id"})
    load(root).run()
    with pytest.raises(WfsqlError, match="did you mean 'orders'"):
        load(root).show("ordrs")


def test_sql_syntax_error_after_a_jinja_call_points_at_the_compiled_line(make_project):
    # {{ ref('a') }} renders shorter than it is written: the caret must not land inside the Jinja call.
    root = make_project({"models/a.sql": "select 1 as id", "models/b.sql": "select * from {{ ref('a') }} where\n"})
    with pytest.raises(SqlSyntaxError) as info:
        load(root).compile()
    message = str(info.value)
    assert "line of the compiled SQL" in message
    assert '> 1 | select * from "main"."a" where' in message
    caret_line = next(line for line in message.splitlines() if line.strip().startswith("|") and "^" in line)
    compiled = 'select * from "main"."a" where'
    assert caret_line.index("^") - caret_line.index("|") - 2 >= compiled.index("where") - 1


def test_show_names_the_unbuilt_parents_instead_of_a_catalog_error(make_project):
    # `show` runs an unbuilt model's SQL; if that SQL reads tables that are not built either (here one behind an
    # ephemeral model), DuckDB's "table does not exist" would not say what to do: wfsql names them.
    from wfsql.api import RunOptions

    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": "select 2 as id",
            "models/eph.sql": "{{ config(materialized='ephemeral') }}select * from {{ ref('a') }}",
            "models/c.sql": "select * from {{ ref('eph') }} union all select * from {{ ref('b') }}",
            "models/other.sql": "select 3 as id",
        }
    )
    assert load(root).run(RunOptions(select=["other"])).success
    with pytest.raises(WfsqlError) as info:
        load(root).show("c")
    assert "c is not built yet, and it reads a and b, not built either" in str(info.value)
    assert "wfsql build -s +c" in info.value.hint
    assert load(root).run(RunOptions(select=["a", "b"])).success
    assert sorted(load(root).show("c")[1]) == [(1,), (2,)]  # parents built: the unbuilt model's SQL runs


def test_a_misspelt_cli_var_is_warned_about_with_the_name_it_meant(make_project):
    import io

    from wfsql.console import Console

    root = make_project(
        {
            "models/a.sql": "select {{ var('min_turns', 2) }} as n",
            "models/p.py": "def model(wf, con):\n    return con.sql(f\"select {wf.var('max_pairs', 5)} as m\")\n",
        }
    )
    out = io.StringIO()
    project = load(root, vars={"min_turn": 3, "max_pairs": 1}, console=Console(quiet=True, file=out, width=200))
    project.compile()
    text = out.getvalue()
    assert "--vars key 'min_turn' is not read by any file" in text and "did you mean 'min_turns'?" in text
    assert "max_pairs" not in text  # read by the Python model: no warning
    out.truncate(0)
    load(root, vars={"min_turns": 3}, console=Console(quiet=True, file=out)).compile()
    assert "warning" not in out.getvalue()


def test_the_unused_vars_scan_reads_nested_folders_and_keyword_calls_but_not_target(tmp_path):
    from wfsql.unused_vars import read_var_names, unused_var_warnings

    (tmp_path / "models" / "logs").mkdir(parents=True)
    (tmp_path / "models" / "logs" / "a.sql").write_text("select {{ var('nested') }}")
    (tmp_path / "models" / "p.py").write_text("def model(wf, con):\n    return wf.var(name='keyword')\n")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "old.sql").write_text("select {{ var('stale') }}")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "venv" / "lib.py").write_text("var('library')")
    read = read_var_names([tmp_path], skip=[tmp_path / "target"])
    assert read == {"nested", "keyword"}
    assert unused_var_warnings([1, True, "nested"], read)[0].startswith("--vars key '1' is not read")
