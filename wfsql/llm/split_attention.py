"""Exact attention for label scoring that skips the blocks a mask would throw away.

Label scoring (`TransformersBackend._forward_rows`) runs every row after a shared prefix (the system prompt),
first the row's own tokens in chunks, then its branches (the label or question continuations) with a
tree-shaped mask. With one dense mask over all keys, the CPU flash kernel computes every query-key block
and masks it afterwards: the upper triangle of a chunk and the sibling branches are computed for nothing,
and a masked call runs slower per FLOP than an unmasked one. Profiles put attention at ~40 % of label
scoring on CPU. So the backend describes each call's shape (an `AttentionPlan`) and this function splits
the keys into parts that need no mask or a small one, runs each part through the flash kernel, which also
returns each query's log-sum-exp, and merges the parts exactly:

    out = Σ_p exp(lse_p - lse) · out_p,   lse = log Σ_p exp(lse_p)

Grouped-query heads are folded into the query axis for the unmasked part, so the key heads are not copied
to match the query heads. Without a plan (generation, outlines, other models) the call goes to
transformers' own SDPA attention, unchanged. A `PackedPlan` (`packed.py`: rows end to end in one pass, no
cache) splits the same way: the prefix for every query at once, then each row's causal and branch parts.
CPU only (`_scaled_dot_product_flash_attention_for_cpu` is the kernel that returns log-sum-exps); on CUDA the
backend keeps masked SDPA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAME = "wfsql_split"
CAUSAL_BLOCK = 256  # query rows per causal block of a prefill chunk; fastest of 64-512 on a 2-core CPU


@dataclass(frozen=True)
class ChunkPlan:
    """A prefill chunk: every query sees the first `visible` keys; the rest are the chunk's own, causal."""

    visible: int


@dataclass(frozen=True)
class BranchPlan:
    """The branch pass: queries see the first `context` keys where `context_mask` (batch, 1, queries, context)
    allows, and the branch keys after them where `branch_mask` (batch, 1, queries, queries) allows."""

    context: int
    context_mask: Any
    branch_mask: Any


@dataclass(frozen=True)
class Segment:
    """One row of a packed pass: its own tokens at `start:start + length`, then its branches (label or question
    continuations) right after them, `branch_mask` (1, 1, b, b) saying which branch tokens see which."""

    start: int
    length: int
    branch_tokens: int = 0
    branch_mask: Any = None


@dataclass(frozen=True)
class PackedPlan:
    """A packed pass (`packed.packed_hidden`): rows laid end to end with no padding and no cache. Every query sees
    the shared prefix, `prefix[layer]` = (keys, values) of shape (1, kv_heads, g, dim), or nothing when it is
    empty; a row token sees its row's earlier tokens; a branch token sees its row and its own branch causally."""

    prefix: Any
    segments: tuple[Segment, ...]


AttentionPlan = ChunkPlan | BranchPlan | PackedPlan


def register() -> str:
    """Register the attention under `NAME` (masks built as for SDPA); returns the name to set on a model."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, split_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME


def split_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers attention-interface entry: (batch, heads, queries, dim) in, (batch, queries, heads, dim) out."""
    plan = kwargs.pop("attention_plan", None)
    if plan is None or dropout:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if isinstance(plan, ChunkPlan):
        output = _chunk(query, key, value, plan.visible, scaling)
    elif isinstance(plan, PackedPlan):
        output = packed_attention(query, key, value, plan, module.layer_idx, scaling)
    else:
        output = _branches(query, key, value, plan, scaling)
    return output.transpose(1, 2).contiguous(), None


def _flash(
    query: Any, key: Any, value: Any, scale: float | None, *, causal: bool = False, mask: Any = None
) -> tuple[Any, Any]:
    """(output, log-sum-exp per query) of the CPU flash kernel; `causal` aligns query i with key i."""
    import torch

    output, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, causal, attn_mask=mask, scale=scale
    )[:2]
    return output, lse


def _unmasked_grouped(query: Any, key: Any, value: Any, scale: float | None) -> tuple[Any, Any]:
    """Unmasked attention with key heads shared by groups of query heads, without repeating the keys."""
    batch, heads, queries, dim = query.shape
    groups = heads // key.shape[1]
    folded = query.reshape(batch, key.shape[1], groups * queries, dim)
    output, lse = _flash(folded, key, value, scale)
    return output.reshape(batch, heads, queries, dim), lse.reshape(batch, heads, queries)


def _repeat_heads(tensor: Any, heads: int) -> Any:
    groups = heads // tensor.shape[1]
    return tensor if groups == 1 else tensor.repeat_interleave(groups, dim=1)


def _merge(first_part: tuple[Any, Any], second_part: tuple[Any, Any]) -> Any:
    """Attention over two disjoint key sets, from each set's (output, log-sum-exp); overwrites the second output.

    With w = exp(lse_a - lse) = sigmoid(lse_a - lse_b): out = out_b + w * (out_a - out_b).
    """
    import torch

    (first, first_lse), (second, second_lse) = first_part, second_part
    weight = torch.sigmoid(first_lse - second_lse).unsqueeze(-1).to(first.dtype)
    return second.lerp_(first, weight)


def _chunk(query: Any, key: Any, value: Any, visible: int, scale: float | None) -> Any:
    """A chunk's queries see the first `visible` keys and their own keys causally."""
    return _causal(query, key, value, scale, visible)[0]


def _additive(mask: Any, dtype: Any) -> Any:
    import torch

    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def _branches(query: Any, key: Any, value: Any, plan: BranchPlan, scale: float | None) -> Any:
    """Branch queries against their row's context (padding masked) and against the branch keys (tree mask)."""
    batch, heads, queries, dim = query.shape
    groups = heads // key.shape[1]
    query = query.contiguous()
    # The context part is most of the keys but few queries: folding the query heads that share a key head into
    # the query axis gives the kernel groups-times longer query blocks (2-3x faster at ~100 queries on CPU).
    folded = query.reshape(batch, key.shape[1], groups * queries, dim)
    context_mask = _additive(plan.context_mask, query.dtype).repeat(1, 1, groups, 1)
    output, lse = _flash(folded, key[:, :, : plan.context], value[:, :, : plan.context], scale, mask=context_mask)
    context = output.reshape(batch, heads, queries, dim), lse.reshape(batch, heads, queries)
    branch = _flash(
        query, _repeat_heads(key[:, :, plan.context :], heads), _repeat_heads(value[:, :, plan.context :], heads),
        scale, mask=_additive(plan.branch_mask, query.dtype),
    )
    return _merge(branch, context)


def _merge_with_lse(first_part: tuple[Any, Any], second_part: tuple[Any, Any]) -> tuple[Any, Any]:
    """`_merge` that also returns the merged log-sum-exp, for merging more than two parts."""
    import torch

    lse = torch.logaddexp(first_part[1], second_part[1])
    return _merge(first_part, second_part), lse


def _causal(query: Any, key: Any, value: Any, scale: float | None, visible: int = 0) -> tuple[Any, Any]:
    """(output, lse) of queries that see the first `visible` keys and the keys after them causally (query i with
    key `visible + i`).

    The causal part runs in query blocks of `CAUSAL_BLOCK`: block i sees the keys before it unmasked and only
    its own block causally, so the wasted upper triangle shrinks to half a block per query while the model's
    matmuls still run on the whole chunk or row (shorter chunks made those slower).
    """
    import torch

    query = query.contiguous()
    heads, queries = query.shape[1], query.shape[2]
    own_keys = _repeat_heads(key[:, :, visible:], heads)
    own_values = _repeat_heads(value[:, :, visible:], heads)
    outputs, lses = [], []
    for start in range(0, queries, CAUSAL_BLOCK):
        end = min(start + CAUSAL_BLOCK, queries)
        block = query[:, :, start:end]
        part = _flash(block, own_keys[:, :, start:end], own_values[:, :, start:end], scale, causal=True)
        seen = visible + start
        if seen:
            part = _merge_with_lse(part, _unmasked_grouped(block, key[:, :, :seen], value[:, :, :seen], scale))
        outputs.append(part[0])
        lses.append(part[1])
    if len(outputs) == 1:
        return outputs[0], lses[0]
    return torch.cat(outputs, dim=2), torch.cat(lses, dim=2)


def packed_attention(query: Any, key: Any, value: Any, plan: PackedPlan, layer: int, scale: float | None) -> Any:
    """Attention of a packed pass: each row's own part (causal blocks; branches: row unmasked, own branch under
    the small tree mask) is computed per row, then merged with every query's attention over the shared prefix,
    which runs as one unmasked call for all rows at once (the prefix's keys are stored once, not per row)."""
    import torch

    query = query.contiguous()
    heads = query.shape[1]
    output = torch.empty_like(query)
    lse = torch.empty(query.shape[:3], dtype=torch.float32, device=query.device)
    for segment in plan.segments:
        start, end = segment.start, segment.start + segment.length
        keys, values = key[:, :, start:end], value[:, :, start:end]
        if segment.length:
            output[:, :, start:end], lse[:, :, start:end] = _causal(query[:, :, start:end], keys, values, scale)
        if segment.branch_tokens:
            stop = end + segment.branch_tokens
            branch_query = query[:, :, end:stop]
            mask = segment.branch_mask.to(query.dtype)
            tree = _flash(branch_query, _repeat_heads(key[:, :, end:stop], heads),
                          _repeat_heads(value[:, :, end:stop], heads), scale, mask=mask)
            if segment.length:
                tree = _merge_with_lse(tree, _unmasked_grouped(branch_query, keys, values, scale))
            output[:, :, end:stop], lse[:, :, end:stop] = tree
    if plan.prefix is None:
        return output
    prefix_keys, prefix_values = plan.prefix[layer]
    shared = _unmasked_grouped(query, prefix_keys, prefix_values, scale)
    return _merge((output, lse), shared)
