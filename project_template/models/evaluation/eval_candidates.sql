-- Step 3 input: every prompt with preferences, embedded (prompt tail + preferences) for clustering.
{{ config(materialized='table') }}
select
    conversation_id,
    feedback_turn,
    prompt,
    transcript,
    preferences,
    llm_embed(right(transcript, 1000) || chr(10) || array_to_string(preferences, '; ')) as embedding
from {{ ref('pair_prompts') }}
