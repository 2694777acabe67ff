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
        hidden = layer(hidden, attention_mask=None, position_embeddings=(cos, sin), attention_plan=plan)
    hidden = _last_layer_at(layers[-1], hidden, (cos, sin), plan, read_index)
    hidden = base.norm(hidden)[0]
    out, offset = [], 0
    for read in reads:
        out.append(hidden[offset : offset + len(read)])
        offset += len(read)
    return out


def _rotate(states: Any, cos: Any, sin: Any) -> Any:
    """Rotary position embedding of (1, heads, tokens, dim) states, with Llama's own `rotate_half` (its
    `apply_rotary_pos_emb` takes queries and keys at the same positions; here the queries are the reads only)."""
    from transformers.models.llama.modeling_llama import rotate_half

    return states * cos.unsqueeze(1) + rotate_half(states) * sin.unsqueeze(1)


def _last_layer_at(layer: Any, hidden: Any, position_embeddings: tuple[Any, Any], plan: Any, index: list[int]) -> Any:
    """The last decoder layer's output at packed positions `index` only: keys and values for every token (the
    read positions attend to them), queries, attention, output projection and MLP for the read positions."""
    import torch

    attention = layer.self_attn
    dim = attention.head_dim
    at = torch.tensor(index, device=hidden.device)
    cos, sin = position_embeddings
    normed = layer.input_layernorm(hidden)
    tokens = hidden.shape[1]
    keys = _rotate(attention.k_proj(normed).view(1, tokens, -1, dim).transpose(1, 2), cos, sin)
    values = attention.v_proj(normed).view(1, tokens, -1, dim).transpose(1, 2)
    queries = attention.q_proj(normed[:, at]).view(1, len(index), -1, dim).transpose(1, 2)
    queries = _rotate(queries, cos[:, at], sin[:, at])

    visible = _visible_keys(plan.segments, index, tokens)
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
    return out + layer.mlp(layer.post_attention_layernorm(out))


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
