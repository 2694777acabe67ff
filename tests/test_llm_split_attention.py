"""Split attention (wfsql/llm/split_attention.py) equals masked SDPA over the same pattern, and label scoring
uses it on CPU without changing any answer."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from wfsql.llm import FeedbackInput, TransformersBackend, split_attention  # noqa: E402
from wfsql.llm.models import ModelSpec  # noqa: E402

HEADS, KV_HEADS, DIM = 6, 2, 16


class _Module:
    num_key_value_groups = HEADS // KV_HEADS
    is_causal = True


def _reference(query, key, value, allowed):
    """Masked SDPA with repeated key heads, what transformers runs without a plan; (batch, queries, heads, dim)."""
    groups = HEADS // KV_HEADS
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1), attn_mask=allowed
    )
    return out.transpose(1, 2)


def _qkv(batch: int, queries: int, keys: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    # queries arrive transposed from (batch, queries, heads, dim), as in the model's attention
    query = torch.randn(batch, queries, HEADS, DIM, generator=generator).transpose(1, 2)
    key = torch.randn(batch, KV_HEADS, keys, DIM, generator=generator)
    value = torch.randn(batch, KV_HEADS, keys, DIM, generator=generator)
    return query, key, value


@pytest.mark.parametrize(("visible", "queries", "block"), [(0, 9, 256), (11, 9, 256), (11, 13, 4), (0, 13, 4)])
def test_chunk_plan_equals_masked_sdpa(visible: int, queries: int, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every query sees the first `visible` keys and the chunk's own keys causally, in causal blocks or not."""
    monkeypatch.setattr(split_attention, "CAUSAL_BLOCK", block)
    query, key, value = _qkv(2, queries, visible + queries)
    allowed = torch.zeros(2, 1, queries, visible + queries, dtype=torch.bool)
    allowed[..., :visible] = True
    allowed[..., visible:] = torch.ones(queries, queries, dtype=torch.bool).tril()
    out, _ = split_attention.split_attention(
        _Module(), query, key, value, None, attention_plan=split_attention.ChunkPlan(visible)
    )
    assert out.shape == (2, queries, HEADS, DIM)
    torch.testing.assert_close(out, _reference(query, key, value, allowed), atol=1e-5, rtol=1e-4)


def test_branch_plan_equals_masked_sdpa() -> None:
    """Branches see their row's real context keys (not its padding) and themselves causally, never a sibling."""
    context, branches = 10, 7
    query, key, value = _qkv(2, branches, context + branches, seed=1)
    context_mask = torch.ones(2, 1, branches, context, dtype=torch.bool)
    context_mask[1, :, :, 8:] = False  # row 1 is two tokens shorter: its padding is hidden
    branch_mask = torch.zeros(2, 1, branches, branches, dtype=torch.bool)
    for start, length in ((0, 3), (3, 4)):
        branch_mask[..., start : start + length, start : start + length] = torch.ones(length, length).tril().bool()
    plan = split_attention.BranchPlan(context, context_mask, branch_mask)
    out, _ = split_attention.split_attention(_Module(), query, key, value, None, attention_plan=plan)
    expected = _reference(query, key, value, torch.cat([context_mask, branch_mask], dim=-1))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_without_a_plan_it_is_transformers_sdpa() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    query, key, value = _qkv(1, 5, 5)
    mask = torch.zeros(1, 1, 5, 5).masked_fill_(~torch.ones(5, 5, dtype=torch.bool).tril(), float("-inf"))
    ours, _ = split_attention.split_attention(_Module(), query, key, value, mask)
    theirs, _ = sdpa_attention_forward(_Module(), query, key, value, mask)
    assert torch.equal(ours, theirs)


def test_label_scoring_answers_do_not_depend_on_split_attention(
    tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CPU default runs split attention (checked by counting its calls); SDPA with masks gives the same."""
    items = [
        FeedbackInput("User: sort a list?\nAssistant: which language?\nUser: python", "Use sorted(xs).", "thanks!"),
        FeedbackInput("", "The war ended in 1955. " * 40, "Wrong, it ended in 1945."),  # longer than a chunk
        FeedbackInput("User: hi", "Hello! How can I help?", "tell me a joke " * 3),
    ]
    spec = dataclasses.replace(tiny_spec, feedback_method="rubric")
    monkeypatch.setattr(TransformersBackend, "prefill_chunk", lambda self: 64)
    monkeypatch.setattr(split_attention, "CAUSAL_BLOCK", 16)
    plain = TransformersBackend(spec)
    plain.__dict__["uses_split_attention"] = False  # what a GPU or a non-SDPA model runs
    expected = plain.feedback(items)

    calls = {"chunk": 0, "branches": 0}
    for name, counter in (("_chunk", "chunk"), ("_branches", "branches")):
        original = getattr(split_attention, name)

        def counted(*args, _original=original, _counter=counter):
            calls[_counter] += 1
            return _original(*args)

        monkeypatch.setattr(split_attention, name, counted)
    split = TransformersBackend(spec)
    assert split.uses_split_attention
    results = split.feedback(items)
    assert calls["chunk"] > 0 and calls["branches"] > 0
    for ours, theirs in zip(results, expected, strict=True):
        assert ours.status == theirs.status == "ok"
        assert ours.value == theirs.value
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    texts = ["I love it. " * 30, "ok"]
    labels = ["positive", "negative", "mixed feelings"]
    for ours, theirs in zip(split.classify(texts, labels), plain.classify(texts, labels), strict=True):
        assert ours.value == theirs.value
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
