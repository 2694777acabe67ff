-- Step 2a: what the user wanted, as short preference statements, for every turn that drew DSAT.
{{ config(materialized='incremental', unique_key=['conversation_id', 'turn_index']) }}

with dsat_turns as (
    select f.conversation_id, f.turn_index, c.assistant_reply, c.user_turn
    from {{ ref('feedback_turns') }} as f
    join {{ ref('feedback_candidates') }} as c using (conversation_id, turn_index)
    where f.dsat
    {% if is_incremental() %}
      and f.conversation_id not in (select conversation_id from {{ this }})
    {% endif %}
),
extracted as (
    select
        conversation_id,
        turn_index,
        llm_extract(
            'Assistant reply:\n' || left(assistant_reply, {{ var('max_reply_chars', 1500) }})
            || '\n\nUser feedback:\n' || user_turn,
            '{{ preference_schema() }}',
            instruction := 'List what the user wants the assistant to do differently, as short imperative statements.'
        ) as extracted
    from dsat_turns
)
select
    conversation_id,
    turn_index,
    cast(extracted -> '$.preferences' as varchar[]) as preferences
from extracted
where extracted is not null
