"""Evaluation data and helpers (labelled dev sets for the feedback classifier)."""
