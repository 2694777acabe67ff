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

{# Canonical turns from a raw relation of conversation records, for your own staging models, e.g.
   select * from {{ sharegpt_turns("read_json_auto('logs/*.jsonl')") }}
   These are pure SQL (no quarantine): declare a source with `format:` to get the checked, counted load. #}

{% macro sharegpt_turns(relation, id_column='id', turns_column='conversations') -%}
(
    select
        cast(conversation_id as varchar) as conversation_id,
        cast(position - 1 as integer) as turn_index,
        {{ canonical_role('turn."from"') }} as role,
        turn."value" as content,
        length(turn."value") as char_length
    from (
        select {{ id_column }} as conversation_id, unnest({{ turns_column }}) as turn,
               generate_subscripts({{ turns_column }}, 1) as position
        from {{ relation }}
    )
)
{%- endmacro %}

{% macro openai_turns(relation, id_column='id', turns_column='messages') -%}
(
    select
        cast(conversation_id as varchar) as conversation_id,
        cast(position - 1 as integer) as turn_index,
        {{ canonical_role('turn."role"') }} as role,
        cast(turn."content" as varchar) as content,
        length(cast(turn."content" as varchar)) as char_length
    from (
        select {{ id_column }} as conversation_id, unnest({{ turns_column }}) as turn,
               generate_subscripts({{ turns_column }}, 1) as position
        from {{ relation }}
    )
)
{%- endmacro %}

{% macro wildchat_turns(relation, id_column='conversation_hash', turns_column='conversation') -%}
{{ openai_turns(relation, id_column, turns_column) }}
{%- endmacro %}
