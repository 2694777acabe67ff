"""Label scoring as one packed forward pass per batch, for Llama-family models on CPU.

The padded path (`TransformersBackend._forward_rows`) copies the shared prefix's keys and values into every
row's KV cache, runs each row in chunks with its padding, then runs the branches in a second call. Here the
rows of a batch are laid end to end, each followed by its branches, and go through the decoder layers once:

* no padding and no KV cache: every key a query needs is computed in the same call, except the prefix's,
  which `split_attention.PackedPlan` hands to attention once for all rows (one unmasked call);
* the last layer runs only where hidden states are read (a branch's last token, say): the other tokens'
  outputs of that layer are never used, so it computes their keys and values and nothing else.

The answers equal the padded path's up to float summation order (tests compare the two on the real model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wfsql.llm import split_attention

SUPPORTED_MODEL_TYPES = frozenset({"llama"})
"""Model types whose decoder layers this module drives directly (embeddings, rotary, layers, norm; pre-norm
attention with q/k/v/o projections and an MLP). Others keep the padded path."""


_SILU_CLASSES = frozenset({"SiLU", "SiLUActivation"})
"""Activation classes that are SiLU (transformers maps `hidden_act: silu` to its own `SiLUActivation`, `swish` to
torch's `nn.SiLU`): `_mlp` runs those in place; any other activation is called as the model defines it."""


def supports(model: Any) -> bool:
    """Whether `packed_hidden` can drive this model (a Llama-family decoder whose parts it knows)."""
    base = getattr(model, "base_model", None)
    return (
        getattr(model.config, "model_type", None) in SUPPORTED_MODEL_TYPES
        and all(hasattr(base, name) for name in ("embed_tokens", "rotary_emb", "layers", "norm"))
    )


def layout(
    starts: Sequence[int], lengths: Sequence[int], branches: Sequence[Sequence[Sequence[int]]]
) -> tuple[split_attention.Segment, ...]:
    """Segments for rows placed at `starts` with `lengths` own tokens and these branches (token lists) after them.

    A branch token sees the earlier tokens of its own branch and none of its siblings': the tree mask is a
    block-diagonal causal mask (additive, 0 where allowed).
    """
    import torch

    segments = []
    masks: dict[tuple[int, ...], Any] = {}
    for start, length, row_branches in zip(starts, lengths, branches, strict=True):
        sizes = tuple(len(branch) for branch in row_branches)
        if sizes not in masks:
            total = sum(sizes)
            allowed = torch.zeros((total, total), dtype=torch.bool)
            offset = 0
            for size in sizes:
                block = torch.ones(size, size, dtype=torch.bool).tril()
                allowed[offset : offset + size, offset : offset + size] = block
                offset += size
            additive = torch.zeros((1, 1, total, total)).masked_fill_(~allowed, torch.finfo(torch.float32).min)
            masks[sizes] = additive if total else None
        segments.append(split_attention.Segment(start, length, sum(sizes), masks[sizes]))
    return tuple(segments)


def packed_hidden(
    model: Any, prefix: Sequence[tuple[Any, Any]] | None, rows: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]],
    reads: Sequence[Sequence[int]],
) -> list[Any]:
    """Final hidden states (after the last norm) at `reads[i]` (indices into row i's own tokens then its branches)
    for rows that continue `prefix` (per-layer keys and values of the shared prompt, or None).

    rows: (own token ids, branches) per row. Positions continue the prefix: a row's tokens at g, g+1, ...; each
    branch restarts right after its row, as the padded path places them.
    """
    import torch

    g = prefix[0][0].shape[2] if prefix else 0
    ids: list[int] = []
    positions: list[int] = []
    starts, lengths = [], []
    for own, branches in rows:
        starts.append(len(ids))
        lengths.append(len(own))
        ids.extend(own)
        positions.extend(range(g, g + len(own)))
        for branch in branches:
            ids.extend(branch)
            positions.extend(range(g + len(own), g + len(own) + len(branch)))
    segments = layout(starts, lengths, [branches for _, branches in rows])
    plan = split_attention.PackedPlan(prefix, segments)
    read_index = [start + r for start, read in zip(starts, reads, strict=True) for r in read]

    base = model.base_model
    device = model.device
    hidden = base.embed_tokens(torch.tensor([ids], device=device))
    cos, sin = base.rotary_emb(hidden, torch.tensor([positions], device=device))
    layers = base.layers[: model.config.num_hidden_layers]
    for layer in layers[:-1]:
        hidden = _layer(layer, hidden, cos, sin, plan)
    hidden = _last_layer_at(layers[-1], hidden, cos, sin, plan, read_index)
    hidden = base.norm(hidden)[0]
    out, offset = [], 0
    for read in reads:
        out.append(hidden[offset : offset + len(read)])
        offset += len(read)
    return out


def _norm(norm: Any, hidden: Any) -> Any:
    """Llama's RMSNorm through torch's fused kernel (same result as its float32 Python form, fewer passes)."""
    import torch

    return torch.nn.functional.rms_norm(hidden, (hidden.shape[-1],), norm.weight, norm.variance_epsilon)


def _heads(projection: Any, normed: Any, dim: int) -> Any:
    """(1, heads, tokens, dim) view of a q/k/v projection of (1, tokens, hidden) states."""
    return projection(normed).view(1, normed.shape[1], -1, dim).transpose(1, 2)


def _rotate(states: Any, cos: Any, sin: Any) -> Any:
    """Rotary position embedding of (1, heads, tokens, dim) states into a new contiguous tensor.

    Equal to Llama's `states * cos + rotate_half(states) * sin` (its `apply_rotary_pos_emb`), written as one
    multiply and two half-width fused multiply-adds: no rotated copy, no negation, no concatenation, and the
    output is laid out as attention reads it (~6x faster than the Python form on strided CPU states).
    """
    import torch

    half = states.shape[-1] // 2
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    out = torch.empty(states.shape, dtype=states.dtype, device=states.device)
    torch.mul(states, cos, out=out)
    out[..., :half].addcmul_(states[..., half:], sin[..., :half], value=-1)
    out[..., half:].addcmul_(states[..., :half], sin[..., half:])
    return out


def _mlp(mlp: Any, normed: Any) -> Any:
    """Llama's MLP, down(act(gate(x)) * up(x)), with the activation and the product in place."""
    import torch

    gate = mlp.gate_proj(normed)
    silu = type(mlp.act_fn).__name__ in _SILU_CLASSES
    gate = torch.nn.functional.silu(gate, inplace=True) if silu else mlp.act_fn(gate)
    return mlp.down_proj(gate.mul_(mlp.up_proj(normed)))


def _layer(layer: Any, hidden: Any, cos: Any, sin: Any, plan: Any) -> Any:
    """One Llama decoder layer over the packed tokens, as `LlamaDecoderLayer` computes it (pre-norm attention and
    MLP, each added to the residual), written out so that the elementwise work runs fused and in place: the
    residual stream `hidden` is this pass's own tensor, updated where it lies."""
    attention = layer.self_attn
    dim = attention.head_dim
    normed = _norm(layer.input_layernorm, hidden)
    queries = _rotate(_heads(attention.q_proj, normed, dim), cos, sin)
    keys = _rotate(_heads(attention.k_proj, normed, dim), cos, sin)
    values = _heads(attention.v_proj, normed, dim)
    attended = split_attention.packed_attention(queries, keys, values, plan, attention.layer_idx, attention.scaling)
    hidden.add_(attention.o_proj(attended.transpose(1, 2).reshape(1, hidden.shape[1], -1)))
    return hidden.add_(_mlp(layer.mlp, _norm(layer.post_attention_layernorm, hidden)))


def _last_layer_at(layer: Any, hidden: Any, cos: Any, sin: Any, plan: Any, index: list[int]) -> Any:
    """The last decoder layer's output at packed positions `index` only: keys and values for every token (the
    read positions attend to them), queries, attention, output projection and MLP for the read positions."""
    import torch

    attention = layer.self_attn
    dim = attention.head_dim
    at = torch.tensor(index, device=hidden.device)
    normed = _norm(layer.input_layernorm, hidden)
    keys = _rotate(_heads(attention.k_proj, normed, dim), cos, sin)
    values = _heads(attention.v_proj, normed, dim)
    queries = _rotate(_heads(attention.q_proj, normed[:, at], dim), cos[:, at], sin[:, at])

    visible = _visible_keys(plan.segments, index, hidden.shape[1])
    if plan.prefix is not None:
        prefix_keys, prefix_values = plan.prefix[attention.layer_idx]
        keys, values = torch.cat((prefix_keys, keys), dim=2), torch.cat((prefix_values, values), dim=2)
        visible = torch.cat((torch.ones((len(index), prefix_keys.shape[2]), dtype=torch.bool), visible), dim=1)
    groups = queries.shape[1] // keys.shape[1]
    keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
    mask = torch.zeros(visible.shape, dtype=queries.dtype).masked_fill_(~visible, torch.finfo(queries.dtype).min)
    attended = torch.nn.functional.scaled_dot_product_attention(
        queries, keys, values, attn_mask=mask.to(queries.device)[None, None], scale=attention.scaling
    )
    out = hidden[:, at] + attention.o_proj(attended.transpose(1, 2).reshape(1, len(index), -1))
    return out.add_(_mlp(layer.mlp, _norm(layer.post_attention_layernorm, out)))


def _visible_keys(segments: Sequence[split_attention.Segment], index: list[int], tokens: int) -> Any:
    """(len(index), tokens) booleans: which packed keys each read position sees (its row up to itself; for a
    branch token, its whole row and its own branch up to itself)."""
    import torch

    visible = torch.zeros((len(index), tokens), dtype=torch.bool)
    for k, position in enumerate(index):
        segment = next(s for s in segments if s.start <= position < s.start + s.length + s.branch_tokens)
        end = segment.start + segment.length
        if position < end:
            visible[k, segment.start : position + 1] = True
            continue
        visible[k, segment.start : end] = True
        mask_row = segment.branch_mask[0, 0, position - end]
        visible[k, end : end + segment.branch_tokens] = mask_row == 0
    return visible
