-- Step 3: the held-out examples with a checklist per example, built from the user's preferences.
select
    c.conversation_id,
    c.feedback_turn,
    c.prompt,
    c.transcript,
    c.preferences as checklist,
    '- [ ] ' || array_to_string(c.preferences, chr(10) || '- [ ] ') as checklist_text,
    s.cluster
from {{ ref('eval_candidates') }} as c
join {{ ref('eval_split') }} as s using (conversation_id, feedback_turn)
