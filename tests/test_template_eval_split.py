"""The template's evaluation split (k-means over embeddings) does not depend on the order rows are read in."""

from __future__ import annotations

from pathlib import Path

from conftest import load, query, statuses

TEMPLATE_SPLIT = Path(__file__).resolve().parent.parent / "project_template" / "models" / "evaluation" / "eval_split.py"

# 40 candidates with unit-length 4-d embeddings on a few loose clusters, stored in a chosen row order.
CANDIDATES = """
{{ config(materialized='table') }}
with raw as (
    select i, cos(i * 0.7) as a, sin(i * 0.7) as b, cos(i * 1.3) as c, sin(i * 1.9) as d
    from range({{ var('candidates', 40) }}) t(i)
), normed as (
    select *, sqrt(a * a + b * b + c * c + d * d) as n from raw
)
select
    'c' || lpad(i::varchar, 3, '0') as conversation_id,
    2 as feedback_turn,
    'prompt' as prompt,
    'transcript' as transcript,
    ['prefers brevity'] as preferences,
    [a / n, b / n, c / n, d / n]::float[] as embedding
from normed
order by {{ var('row_order') }}
"""


def _split(make_project, name: str, row_order: str, extra_vars: str = "") -> list[tuple]:
    root = make_project(
        {
            "models/eval_candidates.sql": CANDIDATES,
            "models/eval_split.py": TEMPLATE_SPLIT.read_text(),
        },
        name=name,
        config=f"vars:\n  row_order: '{row_order}'\n  eval_clusters: 4\n  eval_per_cluster: 2\n{extra_vars}",
    )
    results = load(root).run()
    assert statuses(results) == {"eval_candidates": "success", "eval_split": "success"}
    stored = [row[0] for row in query(root, "select conversation_id from main.eval_candidates")]
    # the rows really are stored in different orders
    assert len(stored) < 3 or (stored == sorted(stored)) == (row_order == "i")
    return query(root, "select conversation_id, feedback_turn, cluster from main.eval_split order by all")


def test_eval_split_is_the_same_whatever_order_the_candidates_are_stored_in(make_project):
    ascending = _split(make_project, "asc", "i")
    shuffled = _split(make_project, "shuffled", "hash(i * 7919)")
    descending = _split(make_project, "desc", "i desc")
    assert len(ascending) == 8  # 4 clusters x 2, one example per conversation
    assert ascending == shuffled == descending


def test_eval_split_leaves_most_conversations_for_training_pairs(make_project):
    """k x n may not take more than `eval_max_share` of the conversations (a toy project would lose all pairs)."""
    capped = _split(make_project, "capped", "i", "  eval_max_share: 0.1\n")
    assert len(capped) == 4  # 10 % of 40 conversations, though 4 clusters x 2 would hold out 8
    assert sorted(cluster for *_, cluster in capped) == [0, 1, 2, 3]  # one per cluster, not two from two
    assert capped == _split(make_project, "capped_shuffled", "hash(i * 7919)", "  eval_max_share: 0.1\n")


def test_eval_split_holds_out_nothing_from_a_lone_candidate(make_project):
    """The share is rounded down: one candidate conversation stays for training (it used to be the whole split,
    leaving no pairs); two give one held-out example."""
    assert _split(make_project, "one", "i", "  candidates: 1\n") == []
    assert len(_split(make_project, "two", "i", "  candidates: 2\n")) == 1
