"""The Jinja context of models, macros (project and bundled), and the static fast path."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load, query

from wfsql.config import load_project
from wfsql.errors import WfsqlError
from wfsql.loader import load_files
from wfsql.nodes import ModelNode
from wfsql.renderer import Renderer


def compiled(root: Path, name: str, **kwargs) -> ModelNode:
    node = load(root, **kwargs).compile().nodes[f"model.proj.{name}"]
    assert isinstance(node, ModelNode)
    return node


def test_ref_source_this_and_config(make_project):
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/b.sql": """
                {{ config(materialized='table', alias='bee', schema='s') }}
                select id, '{{ this }}' as me from {{ ref('a') }} join {{ source('raw', 'things') }} using (id)
                """,
            "models/sources.yml": """
                sources:
                  - name: raw
                    schema: raw_data
                    tables:
                      - name: things
                """,
        }
    )
    node = compiled(root, "b")
    assert 'from "main"."a" join "raw_data"."things" using (id)' in node.compiled_sql
    assert '\'"s"."bee"\' as me' in node.compiled_sql
    assert node.materialized == "table"
    assert set(node.depends_on) == {"model.proj.a", "source.proj.raw.things"}


def test_config_get_reads_back(make_project):
    root = make_project(
        {"models/a.sql": "{{ config(materialized='table') }}select '{{ config.get('materialized') }}' as m"}
    )
    assert "select 'table' as m" in compiled(root, "a").compiled_sql


def test_env_var(make_project, monkeypatch):
    monkeypatch.setenv("WFSQL_TEST_REGION", "eu")
    monkeypatch.delenv("WFSQL_TEST_MISSING", raising=False)
    root = make_project(
        {
            "models/a.sql": "select '{{ env_var('WFSQL_TEST_REGION') }}' as r, "
            "'{{ env_var('WFSQL_TEST_MISSING', 'none') }}' as m"
        }
    )
    assert "select 'eu' as r, 'none' as m" in compiled(root, "a").compiled_sql


def test_env_var_missing_without_default(make_project, monkeypatch):
    monkeypatch.delenv("WFSQL_TEST_MISSING", raising=False)
    root = make_project({"models/a.sql": "select 1 as x,\n'{{ env_var('WFSQL_TEST_MISSING') }}' as m"})
    with pytest.raises(WfsqlError) as info:
        load(root).compile()
    message = str(info.value)
    assert "WFSQL_TEST_MISSING" in message
    assert "a.sql:2" in message


def test_required_var_missing(make_project):
    root = make_project({"models/a.sql": "select\n  {{ var('nope') }} as x"})
    with pytest.raises(WfsqlError) as info:
        load(root).compile()
    message = str(info.value)
    assert "required var 'nope' is not set" in message
    assert "a.sql:2" in message


def test_is_incremental_renders_both_variants(make_project):
    root = make_project(
        {
            "models/a.sql": """
                {{ config(materialized='incremental') }}
                select 1 as id
                {% if is_incremental() %}where id > (select max(id) from {{ this }}){% endif %}
                """
        }
    )
    node = compiled(root, "a")
    assert "where" not in node.compiled_sql
    assert node.incremental_sql is not None
    assert 'where id > (select max(id) from "main"."a")' in node.incremental_sql


def test_project_macro_bundled_macro_and_loop(make_project):
    root = make_project(
        {
            "macros/util.sql": """
                {% macro cents(col) %}({{ col }} * 100)::int{% endmacro %}
                {% macro twice(x) %}{{ return(x * 2) }}{% endmacro %}
                {% macro pick_cols() %}{{ return(['a', 'b', 'c']) }}{% endmacro %}
                """,
            "models/m.sql": """
                select
                {%- for c in pick_cols() %}
                    {{ loop.index }} as {{ c }},
                {%- endfor %}
                    {{ cents('1.5') }} as c1,
                    {{ twice(21) }} as forty_two,
                    {{ canonical_role("'GPT'") }} as role
                """,
        }
    )
    sql = compiled(root, "m").compiled_sql
    assert "1 as a," in sql and "2 as b," in sql and "3 as c," in sql
    assert "(1.5 * 100)::int as c1" in sql
    assert "42 as forty_two" in sql
    load(root).run()
    assert query(root, "select a, b, c, c1, forty_two, role from m") == [(1, 2, 3, 150, 42, "assistant")]


def test_return_list_is_a_python_value(make_project):
    """`return()` passes the value itself, not its text: a caller can index and measure it."""
    root = make_project(
        {
            "macros/m.sql": "{% macro cols() %}{{ return(['x', 'y']) }}{% endmacro %}",
            "models/a.sql": "select {{ cols() | length }} as n, '{{ cols()[1] }}' as second",
        }
    )
    assert "select 2 as n, 'y' as second" in compiled(root, "a").compiled_sql


def test_project_macro_overrides_bundled(make_project):
    root = make_project(
        {
            "macros/roles.sql": "{% macro canonical_role(column) %}upper({{ column }}){% endmacro %}",
            "models/a.sql": "select {{ canonical_role('x') }} as r from (select 'a' as x)",
        }
    )
    assert "select upper(x) as r" in compiled(root, "a").compiled_sql


def test_macro_defined_twice_in_project(make_project):
    root = make_project(
        {
            "macros/one.sql": "{% macro m() %}1{% endmacro %}",
            "macros/two.sql": "{% macro m() %}2{% endmacro %}",
            "models/a.sql": "select {{ m() }} as x",
        }
    )
    with pytest.raises(WfsqlError) as info:
        load(root).compile()
    assert "macro 'm' is defined twice" in str(info.value)
    assert "one.sql" in str(info.value) and "two.sql" in str(info.value)


def test_target_in_context(make_project):
    root = make_project({"models/a.sql": "select '{{ target.name }}' as t, '{{ target.schema }}' as s"})
    assert "select 'default' as t, 'main' as s" in compiled(root, "a").compiled_sql


# ----------------------------------------------------------------------------------- fast path

FAST_TEMPLATES = [
    "select 1 as x",
    "select * from {{ ref('a') }}",
    'select * from {{ref("a")}} join {{   ref( "b" )   }} using (id)',
    "select * from {{ ref('pkg', 'a') }}",
    "select * from {{ ref('a', version=2) }}",
    "{{ config(materialized='table', tags=['x', 'y'], unique_key=['id']) }}\nselect * from {{ source('raw', 't') }}\n",
    "select {{ var('n') }} as n, '{{ var('s') }}' as s, {{ var('f') }} as f, {{ var('missing', 5) }} as d",
    "select {{ var('n') }} + {{ var('n') }} as twice -- {{ ref('a') }}\n",
    "{{ config(alias='z') }}{{ config(schema='q') }}select 1 from {{ source(\"raw\", \"t\") }}",
    "select {{ var('big') }} as big, {{ var('neg') }} as neg",
    "select 1 as x,\r\n  2 as y\r\n",  # Windows line endings: Jinja turns them into \n
    "select {{ var('n') }} as n\r\nfrom {{ ref('a') }}\rwhere true\r\n",
    # config() with quoted-word values takes a regex instead of ast: same config as Jinja's
    "{{ config(materialized='view') }}\nselect 1",
    "{{ config( materialized = \"incremental\" , unique_key='id', incremental_strategy='delete+insert', ) }}select 1",
    "{{ config(schema='a.b', alias='x-1', materialized='table') }}select 1",
    "{{ config(alias='two words') }}select 1",  # not a plain word: the ast route
]


@pytest.fixture
def renderer(make_project) -> Renderer:
    root = make_project(
        {},
        config="""
        vars:
          n: 3
          s: text
          f: 2.5
          big: 100000000000000000000
          neg: -1.25e-7
        """,
    )
    config = load_project(root)
    return Renderer(config, load_files(config).macros)


@pytest.mark.parametrize("template", FAST_TEMPLATES)
def test_fast_path_matches_jinja(renderer: Renderer, template: str):
    fast = renderer._render_fast("m", template)
    assert fast is not None, "this template should take the fast path"
    full = renderer._render_jinja("m", Path("m.sql"), template, incremental=False, node=None)
    assert fast.sql == full.sql
    assert fast.refs == full.refs
    assert fast.sources == full.sources
    assert fast.config == full.config


@pytest.mark.parametrize(
    "template",
    [
        "{% if true %}select 1{% endif %}",
        "select {{ var('s') | upper }}",
        "select 1 {# a comment #}",
        "select * from {{ this }}",
        "select {{ var('missing') }}",  # let Jinja raise with a line number
        "{{ config(enabled=false) }}select 1",  # Jinja's `false` is not a Python literal
    ],
)
def test_fast_path_declines_real_jinja(renderer: Renderer, template: str):
    assert renderer._render_fast("m", template) is None


def test_fast_path_declines_non_scalar_vars(make_project):
    root = make_project({}, config="vars:\n  flag: true\n  items: [1, 2]\n  nothing: null\n")
    config = load_project(root)
    renderer = Renderer(config, [])
    for template in ("select {{ var('flag') }}", "select {{ var('items') }}", "select {{ var('nothing') }}"):
        assert renderer._render_fast("m", template) is None
        # and Jinja's answer is what a user gets through render()
        full = renderer._render_jinja("m", Path("m.sql"), template, incremental=False, node=None)
        assert renderer.render("m", Path("m.sql"), template).sql == full.sql


def test_fast_and_jinja_compile_the_same_project(make_project):
    """Whole-project check: a model on the fast path compiles to the same SQL as its Jinja twin."""
    root = make_project(
        {
            "models/a.sql": "select 1 as id",
            "models/fast.sql": "{{ config(materialized='table') }}\nselect id, {{ var('n') }} as n from {{ ref('a') }}",
            "models/slow.sql": "{{ config(materialized='table') }}\nselect id, {{ var('n') }} as n "
            "from {{ ref('a') }}{# force jinja #}",
        },
        config="vars:\n  n: 4\n",
    )
    manifest = load(root).compile()
    assert manifest.nodes["model.proj.fast"].compiled_sql == manifest.nodes["model.proj.slow"].compiled_sql
