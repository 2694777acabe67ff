"""Evaluation data and helpers (labelled dev sets for the feedback classifier)."""

#: What the template's feedback_candidates shows the classifier (its `max_history_chars` and
#: `max_reply_chars` vars): evaluation and calibration use the same caps, so they measure what is deployed.
TEMPLATE_MAX_HISTORY_CHARS = 600
TEMPLATE_MAX_REPLY_CHARS = 1200
