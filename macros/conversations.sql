{# Bundled macros for conversation data. Projects override any of them by defining the same name. #}

{% macro canonical_role(column) -%}
case lower({{ column }})
    when 'human' then 'user'
    when 'user' then 'user'
    when 'gpt' then 'assistant'
    when 'assistant' then 'assistant'
    when 'chatgpt' then 'assistant'
    when 'bard' then 'assistant'
    when 'bing' then 'assistant'
    when 'model' then 'assistant'
    when 'system' then 'system'
    else lower({{ column }})
end
{%- endmacro %}

{% macro lexical_sat(column) -%}
regexp_matches(lower({{ column }}), '\b(thanks?|thank you|thx|great|perfect|awesome|excellent|amazing|love it|that worked|works now|got it|much better)\b|😊|👍|🙏')
{%- endmacro %}

{% macro lexical_dsat(column) -%}
regexp_matches(lower({{ column }}), '\b(wrong|incorrect|not correct|mistake|error|doesn''t work|does not work|didn''t answer|did not answer|not what i|too long|too short|try again|fix it|that''s not|no, )')
{%- endmacro %}
