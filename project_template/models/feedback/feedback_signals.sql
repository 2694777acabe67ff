-- Step 1 of WildFeedback: classify every user turn t >= 2 against the SAT/DSAT rubric.
-- Incremental on conversation: a new batch of logs only costs its own turns, and the LLM cache makes
-- reruns (and --full-refresh) free for turns already classified.
{{ config(materialized='incremental', unique_key=['conversation_id', 'turn_index']) }}

select
    c.conversation_id,
    c.turn_index,
    feedback_signal(c.history, c.assistant_reply, c.user_turn) as signal
from {{ ref('feedback_candidates') }} as c
{% if is_incremental() %}
where c.conversation_id not in (select conversation_id from {{ this }})
{% endif %}
