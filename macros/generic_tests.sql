{# Bundled generic data tests. Each returns the rows that break the expectation (zero rows = pass).
   Projects add their own with {% test name(model, column_name, ...) %} ... {% endtest %}, as in dbt. #}

{% test not_null(model, column_name) %}
select * from {{ model }} where {{ column_name }} is null
{% endtest %}

{% test unique(model, column_name) %}
select {{ column_name }} as unique_field, count(*) as n_records
from {{ model }}
where {{ column_name }} is not null
group by {{ column_name }}
having count(*) > 1
{% endtest %}

{% test accepted_values(model, column_name, values, quote=true) %}
select {{ column_name }} as value_field, count(*) as n_records
from {{ model }}
where {{ column_name }} not in (
    {%- for value in values -%}
    {% if quote %}'{{ value | replace("'", "''") }}'{% else %}{{ value }}{% endif %}{% if not loop.last %}, {% endif %}
    {%- endfor -%}
)
group by {{ column_name }}
{% endtest %}

{% test relationships(model, column_name, to, field) %}
select child.{{ column_name }} as from_field
from {{ model }} as child
left join {{ to }} as parent on child.{{ column_name }} = parent.{{ field }}
where child.{{ column_name }} is not null and parent.{{ field }} is null
{% endtest %}

{% test expression_is_true(model, expression, column_name=none) %}
select * from {{ model }}
where not ({% if column_name %}{{ column_name }} {% endif %}{{ expression }})
{% endtest %}

{% test row_count(model, min=none, max=none, column_name=none) %}
select n_rows from (select count(*) as n_rows from {{ model }}) as counted
where {% if min is not none %}n_rows < {{ min }}{% else %}false{% endif %}
   or {% if max is not none %}n_rows > {{ max }}{% else %}false{% endif %}
{% endtest %}

{% test unique_combination(model, combination_of_columns, column_name=none) %}
select {{ combination_of_columns | join(', ') }}, count(*) as n_records
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1
{% endtest %}
