"""Split attention (wfsql/llm/split_attention.py) equals masked SDPA over the same pattern, and label scoring
uses it on CPU without changing any answer: padded (chunks, then branches) and packed (`wfsql/llm/packed.py`)."""

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
    split.__dict__["uses_packed_scoring"] = False  # the padded path; packed scoring has its own tests
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


def _packed_reference(query, key, value, prefix, segments):
    """Masked SDPA over [prefix keys, packed keys] with the packed pattern spelled out key by key."""
    tokens = query.shape[2]
    g = prefix[0].shape[2] if prefix else 0
    allowed = torch.zeros(1, 1, tokens, g + tokens, dtype=torch.bool)
    allowed[..., :g] = True
    for segment in segments:
        end = segment.start + segment.length
        for q in range(segment.start, end):
            allowed[0, 0, q, g + segment.start : g + q + 1] = True
        for b in range(segment.branch_tokens):
            allowed[0, 0, end + b, g + segment.start : g + end] = True
            allowed[0, 0, end + b, g + end : g + end + segment.branch_tokens] = segment.branch_mask[0, 0, b] == 0
    if prefix:
        key, value = torch.cat([prefix[0], key], dim=2), torch.cat([prefix[1], value], dim=2)
    return _reference(query, key, value, allowed)


@pytest.mark.parametrize("with_prefix", [True, False])
@pytest.mark.parametrize("block", [256, 4])
def test_packed_plan_equals_masked_sdpa(with_prefix: bool, block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows laid end to end: each sees the prefix, its own earlier tokens, and (branches) its row and own branch;
    never another row, a sibling branch or a later token. Rows with and without branches, one of one token."""
    from wfsql.llm import packed

    monkeypatch.setattr(split_attention, "CAUSAL_BLOCK", block)
    branches = [[[1, 2], [3, 4, 5]], [], [[6]], [[7, 8, 9], [1]]]
    lengths = [9, 5, 1, 11]
    starts, cursor = [], 0
    for length, row_branches in zip(lengths, branches, strict=True):
        starts.append(cursor)
        cursor += length + sum(map(len, row_branches))
    segments = packed.layout(starts, lengths, branches)
    query, key, value = _qkv(1, cursor, cursor, seed=2)
    prefix = None
    if with_prefix:
        _, prefix_key, prefix_value = _qkv(1, 1, 7, seed=3)
        prefix = (prefix_key, prefix_value)

    class _Layer(_Module):
        layer_idx = 0

    plan = split_attention.PackedPlan([prefix] if prefix else None, segments)
    out, _ = split_attention.split_attention(_Layer(), query, key, value, None, attention_plan=plan)
    expected = _packed_reference(query, key, value, prefix, segments)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_packed_scoring_equals_padded_scoring(tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    """Feedback, classify and judge give the same answers packed (the CPU default) as padded: branches, a row's
    last token read (classify), multi-token labels, rows longer than a causal block, several rows per batch."""
    from wfsql.llm import packed
    from wfsql.llm.judge import JudgeInput

    monkeypatch.setattr(split_attention, "CAUSAL_BLOCK", 16)
    spec = dataclasses.replace(tiny_spec, feedback_method="rubric")
    padded = TransformersBackend(spec)
    padded.__dict__["uses_packed_scoring"] = False
    packed_backend = TransformersBackend(spec)
    assert packed_backend.uses_packed_scoring

    calls = {"packed": 0}
    original = packed.packed_hidden

    def counted(*args, **kwargs):
        calls["packed"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(packed, "packed_hidden", counted)
    items = [
        FeedbackInput("User: sort a list?\nAssistant: which language?\nUser: python", "Use sorted(xs).", "thanks!"),
        FeedbackInput("", "The war ended in 1955. " * 40, "Wrong, it ended in 1945."),
        FeedbackInput("User: hi", "Hello! How can I help?", "tell me a joke " * 3),
    ]
    for ours, theirs in zip(packed_backend.feedback(items), padded.feedback(items), strict=True):
        assert ours.status == theirs.status == "ok"
        assert ours.value == theirs.value
        assert ours.prompt_tokens == theirs.prompt_tokens
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    texts = ["I love it. " * 30, "ok", "meh"]
    labels = ["positive", "negative", "mixed feelings"]
    for ours, theirs in zip(packed_backend.classify(texts, labels), padded.classify(texts, labels), strict=True):
        assert ours.value == theirs.value
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    duels = [JudgeInput("Sort a list in Python", "sorted(xs)", "Use a loop.", "- short answer"),
             JudgeInput("hi", "Hello!", "Hey " * 20, None)]
    for ours, theirs in zip(packed_backend.judge(duels), padded.judge(duels), strict=True):
        assert ours.status == theirs.status == "ok"
        assert ours.value["verdict"] == theirs.value["verdict"]
        assert ours.probabilities == pytest.approx(theirs.probabilities, abs=1e-4)
    assert calls["packed"] >= 3


def test_packed_scoring_can_be_turned_off(tiny_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFSQL_PACKED_SCORING", "0")
    assert not TransformersBackend(tiny_spec).uses_packed_scoring
    monkeypatch.delenv("WFSQL_PACKED_SCORING")
    assert TransformersBackend(tiny_spec).uses_packed_scoring


def test_packed_layer_equals_llamas_own_decoder_layer() -> None:
    """`packed._layer` writes out a Llama decoder layer (fused norm, rotary into attention's layout, SiLU and
    residuals in place): on one causal row it must equal `LlamaDecoderLayer` itself, with weights large enough
    (std 0.5) that a wrong rotary sign or a missed residual would show, not be damped away as at std 0.02."""
    import torch
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaModel, apply_rotary_pos_emb

    from wfsql.llm import packed, split_attention

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
        vocab_size=50, hidden_act="silu", attn_implementation="sdpa",
    )
    model = LlamaModel(config).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    layer = model.layers[0]
    assert type(layer.mlp.act_fn).__name__ in packed._SILU_CLASSES  # the in-place SiLU branch is the one tested
    tokens = 40
    hidden = torch.randn(1, tokens, 64)
    with torch.inference_mode():
        cos, sin = model.rotary_emb(hidden, torch.arange(tokens)[None])
        queries = torch.randn(1, 4, tokens, 16)
        keys = torch.randn(1, 2, tokens, 16)
        expected_q, expected_k = apply_rotary_pos_emb(queries, keys, cos, sin)
        assert torch.allclose(packed._rotate(queries, cos, sin), expected_q, atol=1e-5)
        assert torch.allclose(packed._rotate(keys, cos, sin), expected_k, atol=1e-5)
        expected = layer(hidden.clone(), attention_mask=None, position_embeddings=(cos, sin))
        expected = expected[0] if isinstance(expected, tuple) else expected
        plan = split_attention.PackedPlan(None, packed.layout([0], [tokens], [[]]))
        ours = packed._layer(layer, hidden.clone(), cos, sin, plan)
    assert expected.abs().max() > 1  # a layer that did something
    assert torch.allclose(ours, expected, atol=1e-4, rtol=1e-4), (ours - expected).abs().max()
