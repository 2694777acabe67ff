{# Prompts and schemas of the WildFeedback pipeline; edit them here to change what the models are asked. #}

{% macro preference_schema() -%}
{"type": "object", "properties": {"preferences": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "minLength": 3, "maxLength": 100}}}, "required": ["preferences"]}
{%- endmacro %}

{% macro safety_instruction() -%}
You are a helpful, honest and harmless assistant. Follow the preferences the user stated unless they ask for something unsafe, illegal or deceptive; then decline politely.
{%- endmacro %}

{% macro generation_options(max_tokens=128) -%}
{"system": "{{ safety_instruction() | replace('"', '\\"') }}", "max_tokens": {{ max_tokens }}}
{%- endmacro %}

{% macro reply_prompt(transcript, preferences=none) -%}
'Conversation so far:' || chr(10) || {{ transcript }} || chr(10) || chr(10)
{%- if preferences %} || 'The user has said they want: ' || array_to_string({{ preferences }}, '; ') || '.' || chr(10) {% endif %}
|| 'Write the assistant''s next reply.'
{%- endmacro %}

{% macro judge_prompt(transcript, preferences, reply_a, reply_b) -%}
'Conversation:' || chr(10) || {{ transcript }} || chr(10) || chr(10)
|| 'Checklist (what the user asked for):' || chr(10) || '- ' || array_to_string({{ preferences }}, chr(10) || '- ')
|| chr(10) || chr(10) || 'Reply A:' || chr(10) || {{ reply_a }} || chr(10) || chr(10) || 'Reply B:' || chr(10) || {{ reply_b }}
{%- endmacro %}

{% macro looks_like_refusal(column) -%}
regexp_matches(lower({{ column }}), '^\s*(i''m sorry|i am sorry|i cannot|i can''t|as an ai)')
{%- endmacro %}
