"""The `Backend` on transformers + outlines: batched, constrained, and scoring instead of decoding where it can.

Three ways to get an answer out of a causal LM, cheapest first:

* **Label scoring** (classify, feedback). A fixed answer set does not need decoding: one forward pass over
  the prompt gives the next-token distribution, and each label's probability is read off it (multi-token
  labels add their own tokens as continuations). Feedback asks 18 yes/no questions about one conversation;
  they are scored as 18 short continuations ("- gratitude:") of one shared conversation prefix, in one
  forward pass with a tree-shaped attention mask: every continuation attends to the conversation and to
  itself, never to its siblings, so the conversation is encoded once per row instead of 18 times. The
  system prompt, identical for every row, is encoded once per process and reused as a KV cache.
* **Constrained decoding** (extract). outlines compiles the JSON schema into a token mask; one outlines
  generator per schema is reused for every batch, and its logits processor runs inside `model.generate` on
  length-sorted, left-padded batches.
* **Free decoding** (generate), greedy or sampled with a per-row seeded Gumbel-max sampler, so a seeded
  sample depends only on (seed, prompt), never on what else was in the batch.

Prompts are built from pieces: the chat template's frame (special tokens allowed) around user content that
is tokenised with special tokens split, so a conversation containing "<|im_end|>" stays text and cannot
close its message. Over-long inputs are cut from the middle by token count to fit the model's context.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from wfsql.llm import packed, split_attention
from wfsql.llm.backend import FeedbackInput, LLMResult
from wfsql.llm.feedback import ALL_CATEGORIES, DEFAULT_THRESHOLD, feedback_value
from wfsql.llm.judge import VERDICTS, JudgeInput, judge_value
from wfsql.llm.models import CLASSIFIER_METHODS, LoadedModel, ModelSpec, load_model
from wfsql.llm.prompts import (
    DEFAULT_CLASSIFY_INSTRUCTION,
    DEFAULT_EXTRACT_INSTRUCTION,
    DEFAULT_TEMPLATES,
    PromptTemplate,
    render,
)

_log = logging.getLogger(__name__)
_MARK = "\x00WFSQL_USER_CONTENT\x00"
_OMITTED = "\n[... {n} tokens omitted ...]\n"
_MARGIN = 16  # tokens kept spare when cutting: re-tokenising a cut text can merge differently at the seams
JSON_WHITESPACE = r"[ ]?"
"""Whitespace outlines may put between JSON tokens: at most one space, so a small model cannot pad forever."""


class InputTooLongError(ValueError):
    """The part of an input that must not be cut does not fit the context on its own."""


@dataclass
class _Row:
    """One row of a label-scoring pass: its own tokens, its scored continuations, and what to read."""

    ids: list[int]
    branches: list[list[int]] = field(default_factory=list)

    @property
    def flat(self) -> list[int]:
        out = list(self.ids)
        for branch in self.branches:
            out.extend(branch)
        return out

    def branch_offsets(self) -> list[int]:
        offsets, offset = [], len(self.ids)
        for branch in self.branches:
            offsets.append(offset)
            offset += len(branch)
        return offsets


@dataclass
class _Decoded:
    ids: list[int]
    text: str
    finished: bool  # stopped on EOS or a stop string, not on max_new_tokens


class TransformersBackend:
    """`Backend` on a local transformers model. Loads the model on first use (see `models.load_model`).

    templates: overrides of the default prompt templates, by kind ("classify", "extract", "generate",
        "feedback"); `template_versions` reflects them.
    context_tokens: cap on prompt + answer tokens (default and maximum: the model's context length); lower
        it to trade accuracy on long conversations for speed.
    feedback_threshold: P(yes) above which a rubric category is reported.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        templates: Mapping[str, PromptTemplate] | None = None,
        context_tokens: int | None = None,
        feedback_threshold: float = DEFAULT_THRESHOLD,
        max_batch_tokens: int | None = None,
    ) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.templates: dict[str, PromptTemplate] = dict(DEFAULT_TEMPLATES)
        for kind, template in (templates or {}).items():
            if kind not in self.templates or template.kind != kind:
                raise ValueError(f"template for {kind!r} must be a PromptTemplate of kind {kind!r}")
            self.templates[kind] = template
        # Settings that change answers are part of the version, hence of the SQL side's cache keys.
        suffix = f";context={context_tokens}" if context_tokens else ""
        self.template_versions = {kind: template.version + suffix for kind, template in self.templates.items()}
        if feedback_threshold != DEFAULT_THRESHOLD:
            self.template_versions["feedback"] += f";threshold={feedback_threshold:g}"
        self.feedback_threshold = feedback_threshold
        # Small models answer feedback_signal with the calibrated classifier (wfsql/llm/calibrated.py)
        # unless the project overrides the rubric prompt or asks for it (`feedback_method: rubric`).
        overridden = "feedback" in (templates or {})
        self.feedback_method = spec.resolved_feedback_method()
        if overridden and spec.feedback_method == "auto":
            self.feedback_method = "rubric"
        if self.feedback_method in CLASSIFIER_METHODS:
            from wfsql.llm.calibrated import classifier_for

            self.template_versions["feedback"] = classifier_for(self.feedback_method).cache_version
        self._context_override = context_tokens
        self._max_batch_tokens = max_batch_tokens
        self._loaded: LoadedModel | None = None
        self._lock = threading.RLock()
        self._frames: dict[str | None, tuple[list[int], list[int]]] = {}
        self._prefix_kv: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}
        self._generators: dict[tuple[Any, ...], Any] = {}
        self._outlines_model: Any = None

    # ------------------------------------------------------------------------------------ model

    @property
    def loaded(self) -> LoadedModel:
        with self._lock:
            if self._loaded is None:
                self._loaded = load_model(self.spec)
            return self._loaded

    @functools.cached_property
    def uses_split_attention(self) -> bool:
        """Label scoring on CPU runs its attention in exact parts that skip masked blocks (`split_attention`).

        The model's attention becomes wfsql's, which hands every call without a plan to transformers' SDPA.
        `WFSQL_SPLIT_ATTENTION=0` turns it off (masked SDPA, the same answers, ~10 % slower label scoring).
        """
        if os.environ.get("WFSQL_SPLIT_ATTENTION", "1") == "0":
            return False
        model = self.loaded.model
        current = getattr(model.config, "_attn_implementation", None)
        if self.loaded.device != "cpu" or current not in ("sdpa", split_attention.NAME):
            return False
        if current == "sdpa":  # another backend sharing the model may have switched it already
            model.set_attn_implementation(split_attention.register())
        return True

    @functools.cached_property
    def uses_packed_scoring(self) -> bool:
        """Label scoring runs each batch as one packed pass (`packed`): on CPU with split attention, for the
        Llama-family models it knows. Same answers as the padded path up to float rounding; 15-20 % faster on
        the default model. `WFSQL_PACKED_SCORING=0` keeps the padded path."""
        if os.environ.get("WFSQL_PACKED_SCORING", "1") == "0":
            return False
        return self.uses_split_attention and packed.supports(self.loaded.model)

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def context_tokens(self) -> int:
        context = self.loaded.context_length
        return min(context, self._context_override) if self._context_override else context

    @property
    def on_cuda(self) -> bool:
        return self.loaded.device == "cuda"

    def generation_batch_size(self) -> int:
        return self.spec.batch_size or (32 if self.on_cuda else 8)

    def scoring_batch_limits(self) -> tuple[int, int]:
        """(max rows, max tokens incl. padding) of one label-scoring pass.

        On CPU a few hundred tokens already fill the cores, so batches stay small and padding stays low.
        """
        rows = self.spec.batch_size or (64 if self.on_cuda else 16)
        tokens = self._max_batch_tokens or (32768 if self.on_cuda else 2048)
        return rows, tokens

    def prefill_chunk(self) -> int:
        """Row tokens per forward call in label scoring (see `_forward_rows`)."""
        return 4096 if self.on_cuda else 512

    @property
    def outlines_model(self) -> Any:
        """The outlines wrapper of the loaded model (created once)."""
        with self._lock:
            if self._outlines_model is None:
                import outlines

                self._outlines_model = outlines.from_transformers(self.loaded.model, self.loaded.tokenizer)
                # Prompts reach outlines already rendered with the chat template; never wrap them twice.
                self._outlines_model.type_adapter.has_chat_template = False
            return self._outlines_model

    def generator(self, output_type: Any, key: tuple[Any, ...]) -> Any:
        """One outlines generator per output type, reused: compiling a JSON schema's index is costly."""
        with self._lock:
            if key not in self._generators:
                import outlines

                self._generators[key] = outlines.Generator(self.outlines_model, output_type)
            return self._generators[key]

    def json_generator(self, json_schema: Mapping[str, Any]) -> Any:
        from outlines.types import JsonSchema

        canonical = json.dumps(json_schema, sort_keys=True)
        return self.generator(JsonSchema(canonical, whitespace_pattern=JSON_WHITESPACE), ("json", canonical))

    def choice_generator(self, labels: Sequence[str]) -> Any:
        return self.generator(Literal[tuple(labels)], ("choice", tuple(labels)))

    # ---------------------------------------------------------------------------- tokenising

    def encode_text(self, text: str) -> list[int]:
        """Tokens of user-provided text: special-token strings in it stay plain text."""
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def _encode_frame(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def frame(self, system: str | None) -> tuple[list[int], list[int]]:
        """Token ids of the chat template before and after one user message (with the assistant header)."""
        with self._lock:
            if system not in self._frames:
                tokenizer = self.tokenizer
                messages = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": _MARK}
                ]
                if getattr(tokenizer, "chat_template", None):
                    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                    head, tail = rendered.split(_MARK, 1)
                else:
                    head, tail = (f"{system}\n\n" if system else ""), "\n\n"
                self._frames[system] = (self._encode_frame(head), self._encode_frame(tail))
            return self._frames[system]

    def render_prompt(self, kind: str, *, system: str | None = None, **fields: str) -> str:
        """The full prompt text of one item as the model sees it (for baselines that pass text to outlines)."""
        template = self.templates[kind]
        head, tail = self.frame(system if kind == "generate" else template.system)
        user = render(template.user, **fields)
        return self.tokenizer.decode(head + self.encode_text(user) + tail) + template.assistant_prefix

    def cut_middle(self, text: str, keep_tokens: int) -> str:
        """`text` shortened to about `keep_tokens` tokens by dropping its middle (start and end are kept)."""
        ids = self.encode_text(text)
        if len(ids) <= keep_tokens:
            return text
        marker_cost = len(self.encode_text(_OMITTED.format(n=len(ids))))
        keep = max(0, keep_tokens - marker_cost)
        head_n = keep // 2
        tail_n = keep - head_n
        head = self.tokenizer.decode(ids[:head_n]) if head_n else ""
        tail = self.tokenizer.decode(ids[len(ids) - tail_n :]) if tail_n else ""
        return head + _OMITTED.format(n=len(ids) - keep) + tail

    def fit_fields(
        self, user_template: str, fields: dict[str, str], order: Sequence[str], budget: int, protected: str
    ) -> tuple[list[int], bool]:
        """Render `user_template` within `budget` tokens, cutting fields in `order` (middle first).

        `protected` is never cut: if it alone overflows the budget, InputTooLongError. Returns the user
        content's token ids and whether anything was cut.
        """
        if budget <= 0:
            raise InputTooLongError(f"the prompt template leaves no room for the input (budget {budget} tokens)")
        ids = self.encode_text(render(user_template, **fields))
        if len(ids) <= budget:
            return ids, False
        fields = dict(fields)
        for _ in range(4):
            excess = len(ids) - budget
            if excess <= 0:
                return ids, True
            for name in order:
                if excess <= 0:
                    break
                size = len(self.encode_text(fields[name]))
                if size == 0:
                    continue
                keep = max(0, size - excess - _MARGIN)
                fields[name] = self.cut_middle(fields[name], keep) if keep else _OMITTED.format(n=size).strip()
                excess -= size - keep
            ids = self.encode_text(render(user_template, **fields))
        if len(ids) <= budget:
            return ids, True
        protected_size = len(self.encode_text(fields[protected]))
        raise InputTooLongError(
            f"input does not fit the {budget}-token budget even with everything else cut "
            f"({protected} alone is {protected_size} tokens)"
        )

    # ------------------------------------------------------------------------------ batching

    @staticmethod
    def _batches(lengths: Mapping[int, int], max_rows: int, max_tokens: int) -> list[list[int]]:
        """Item indices in length-sorted batches of at most max_rows rows and max_tokens padded tokens."""
        order = sorted(lengths, key=lambda i: (lengths[i], i))
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            width = lengths[index]
            if current and (len(current) >= max_rows or (len(current) + 1) * max(width, 1) > max_tokens):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    @staticmethod
    def _isolated(
        indices: list[int], run: Callable[[list[int]], list[LLMResult]], out: dict[int, LLMResult]
    ) -> None:
        """Run a batch; if it raises, split it until the failing items are alone and become error results."""
        try:
            results = run(indices)
        except Exception as error:
            if len(indices) == 1:
                out[indices[0]] = LLMResult.failure(f"{type(error).__name__}: {error}")
                return
            middle = len(indices) // 2
            TransformersBackend._isolated(indices[:middle], run, out)
            TransformersBackend._isolated(indices[middle:], run, out)
            return
        out.update(zip(indices, results, strict=True))

    # ------------------------------------------------------------------------- label scoring

    def _prefix_cache(self, prefix: tuple[int, ...]) -> list[tuple[Any, Any]]:
        """Per-layer (keys, values) of a prefix shared by every row (the system prompt), batch size 1."""
        import torch

        if prefix not in self._prefix_kv:
            model = self.loaded.model
            with torch.inference_mode():
                out = model.base_model(input_ids=torch.tensor([prefix], device=model.device), use_cache=True)
            cache = getattr(out, "cache", None) or out.past_key_values  # renamed to `cache` in transformers 5
            self._prefix_kv[prefix] = [(layer.keys, layer.values) for layer in cache.layers]
            while len(self._prefix_kv) > 8:
                self._prefix_kv.pop(next(iter(self._prefix_kv)))
        return self._prefix_kv[prefix]

    def _row_cache(self, prefix: tuple[int, ...], batch: int, capacity: int) -> Any:
        """A KV cache for `batch` rows that continue `prefix`, with room for `capacity` tokens per row.

        The prefix's keys and values (computed once per process) are copied in; later tokens are written into
        buffers allocated once, instead of transformers' DynamicCache re-concatenating every layer's whole
        cache at each forward call (one call per decoded token).
        """
        kv = self._prefix_cache(prefix) if prefix else None
        config = self.loaded.model.config
        layers = []
        for layer in range(config.num_hidden_layers):
            keys, values = kv[layer] if kv is not None else (None, None)
            layers.append(_growing_layer(keys, values, batch, capacity))
        return _growing_cache(layers)

    def _prefill_rows(
        self, cache: Any, g: int, row_ids: Any, lengths: list[int], wanted: list[list[int]]
    ) -> dict[tuple[int, int], Any]:
        """Run right-padded `row_ids` after the `g` cached prefix tokens, in chunks of `prefill_chunk` tokens.

        Returns the hidden states at `wanted[i]` (indices into row i). A dense attention mask over a whole row
        would spend half its work on the masked upper triangle, which on CPU costs as much as the linear
        layers; chunks keep that waste to half a chunk per token. Padded keys are masked out; a padded query
        sees only itself.
        """
        import torch

        batch, width = row_ids.shape
        row_hidden: dict[tuple[int, int], Any] = {}
        chunk = self.prefill_chunk()
        key_index = torch.arange(width)
        for start in range(0, width, chunk):
            end = min(start + chunk, width)
            query_index = torch.arange(start, end)
            # query q sees prefix keys, and row keys k <= q that are real tokens of its row
            causal = key_index[None, :end] <= query_index[:, None]
            allowed = torch.zeros((batch, 1, end - start, g + end), dtype=torch.bool)
            allowed[:, :, :, :g] = True
            for i in range(batch):
                allowed[i, 0, :, g:] = causal & (key_index[None, :end] < lengths[i])
                allowed[i, 0, :, g + start :] |= torch.eye(end - start, dtype=torch.bool)  # padding: itself
            positions = (g + query_index)[None, :].expand(batch, -1)
            plan = split_attention.ChunkPlan(g + start) if self.uses_split_attention else None
            hidden = self._run_model(cache, row_ids[:, start:end], positions, allowed, plan)
            for i, read in enumerate(wanted):
                for r in read:
                    if start <= r < end:
                        row_hidden[(i, r)] = hidden[i, r - start]
        return row_hidden

    def _run_model(
        self, cache: Any, ids: Any, positions: Any, allowed: Any, plan: split_attention.AttentionPlan | None = None
    ) -> Any:
        """Last hidden states of one forward call; `allowed` (batch, 1, queries, keys) says what each query sees.

        `plan` describes the same pattern in parts for `split_attention`; the mask is still passed, so a model
        whose attention does not receive the plan computes the same result the slower way.
        """
        import torch

        model = self.loaded.model
        dtype = self.loaded.dtype
        device = model.device
        # An additive float mask: SDPA runs markedly faster with it than with a boolean one on CPU.
        additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
        additive.masked_fill_(~allowed, torch.finfo(dtype).min)
        return model.base_model(
            input_ids=ids.to(device), position_ids=positions.to(device), attention_mask=additive.to(device),
            cache=cache, use_cache=True, **({"attention_plan": plan} if plan is not None else {}),
        ).last_hidden_state

    def _forward_rows(self, prefix: tuple[int, ...], rows: list[_Row], reads: list[list[int]]) -> list[Any]:
        """Hidden states at `reads[i]` (indices into rows[i].flat) for rows that continue `prefix`.

        The prefix (the system prompt, the same for every row) comes from the shared KV cache; the rows' own
        tokens run in chunks (`_prefill_rows`). Finally every row's branches (the label or question
        continuations) run in one pass with a tree-shaped mask: each branch sees the prefix, its row, and
        itself causally, never a sibling, so the row is encoded once however many branches it has.
        Rows are right-padded; padded keys are masked out and padded queries are ignored.

        On CPU with a Llama-family model the batch instead runs as one packed pass (`packed.packed_hidden`):
        no padding, no per-row copy of the prefix cache, and the last layer only where states are read.
        """
        if self.uses_packed_scoring:
            kv = self._prefix_cache(prefix) if prefix else None
            return packed.packed_hidden(self.loaded.model, kv, [(row.ids, row.branches) for row in rows], reads)
        import torch

        g = len(prefix)
        batch = len(rows)
        pad = self.tokenizer.pad_token_id or 0
        lengths = [len(row.ids) for row in rows]
        width = max(lengths)
        branch_width = max(sum(len(b) for b in row.branches) for row in rows)
        cache = self._row_cache(prefix, batch, g + width + branch_width)
        run = functools.partial(self._run_model, cache)

        row_ids = _right_padded([row.ids for row in rows], width, pad)
        wanted = [[r for r in read if r < lengths[i]] for i, read in enumerate(reads)]
        row_hidden = self._prefill_rows(cache, g, row_ids, lengths, wanted)

        branch_hidden = None
        if branch_width:
            ids = torch.full((batch, branch_width), pad, dtype=torch.long)
            positions = torch.full((batch, branch_width), g, dtype=torch.long)
            allowed = torch.zeros((batch, 1, branch_width, g + width + branch_width), dtype=torch.bool)
            allowed[:, :, :, :g] = True
            for i, row in enumerate(rows):
                n, offset = lengths[i], 0
                allowed[i, 0, :, g : g + n] = True
                for branch in row.branches:
                    m = len(branch)
                    ids[i, offset : offset + m] = torch.tensor(branch, dtype=torch.long)
                    positions[i, offset : offset + m] = torch.arange(g + n, g + n + m)
                    base = g + width + offset
                    allowed[i, 0, offset : offset + m, base : base + m] = torch.ones(m, m, dtype=torch.bool).tril()
                    offset += m
                for j in range(offset, branch_width):  # padding: itself only
                    allowed[i, 0, j, g + width + j] = True
            plan = None
            if self.uses_split_attention:
                context = g + width
                plan = split_attention.BranchPlan(context, allowed[..., :context], allowed[..., context:])
            branch_hidden = run(ids, positions, allowed, plan)

        out = []
        for i, read in enumerate(reads):
            vectors = [
                row_hidden[(i, r)] if r < lengths[i] else branch_hidden[i, r - lengths[i]]  # type: ignore[index]
                for r in read
            ]
            out.append(torch.stack(vectors))
        return out

    def _score(
        self,
        prefix: tuple[int, ...],
        rows: dict[int, _Row],
        reads: Callable[[_Row], list[int]],
        finish: Callable[[int, Any, _Row], LLMResult],
        out: dict[int, LLMResult],
    ) -> None:
        """Run rows through `_forward_rows` in token-budgeted batches; `finish` turns hidden states into results."""
        max_rows, max_tokens = self.scoring_batch_limits()
        lengths = {index: len(row.flat) for index, row in rows.items()}

        def run(indices: list[int]) -> list[LLMResult]:
            import torch

            started = time.perf_counter()
            batch_rows = [rows[i] for i in indices]
            with torch.inference_mode():
                hidden = self._forward_rows(prefix, batch_rows, [reads(row) for row in batch_rows])
                results = [finish(i, h, rows[i]) for i, h in zip(indices, hidden, strict=True)]
            share = (time.perf_counter() - started) * 1000 / len(indices)
            return [_with_latency(result, share) for result in results]

        for batch in self._batches(lengths, max_rows, max_tokens):
            self._isolated(batch, run, out)

    def classify(self, texts: list[str], labels: list[str], *, instruction: str | None = None) -> list[LLMResult]:
        """Label scoring: P(label | prompt) for every label from one forward pass per batch.

        A label's score is the sum of its tokens' log-probabilities (plus end-of-sequence when one label's
        tokens are a prefix of another's, so the shorter label is not favoured for free); probabilities are
        normalised over the label set.
        """
        with self._lock:
            try:
                label_ids = self._label_ids(labels)
            except ValueError as error:
                return [LLMResult.failure(str(error)) for _ in texts]
            template = self.templates["classify"]
            head, tail = self.frame(template.system)
            prefix_tail = self.encode_text(template.assistant_prefix) if template.assistant_prefix else []
            fields = {"instruction": instruction or DEFAULT_CLASSIFY_INSTRUCTION, "labels": ", ".join(labels)}
            longest = max(len(ids) for ids in label_ids)
            budget = self.context_tokens - len(head) - len(tail) - len(prefix_tail) - longest - 1
            rows: dict[int, _Row] = {}
            out: dict[int, LLMResult] = {}
            for index, text in enumerate(texts):
                try:
                    user, _ = self.fit_fields(template.user, {**fields, "text": text}, ["text"], budget, "instruction")
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                branches = [ids[:-1] for ids in label_ids if len(ids) > 1]
                rows[index] = _Row(user + tail + prefix_tail, branches)

            def finish(index: int, hidden: Any, row: _Row) -> LLMResult:
                scores, probs = self._label_scores(hidden, label_ids)
                best = max(range(len(labels)), key=lambda k: (scores[k], -k))
                return LLMResult(
                    labels[best], prompt_tokens=len(head) + len(row.flat), probability=probs[best],
                    probabilities=dict(zip(labels, probs, strict=True)),
                )

            self._score(tuple(head), rows, self._label_reads, finish, out)
            return [out[i] for i in range(len(texts))]

    @staticmethod
    def _label_reads(row: _Row) -> list[int]:
        """Where label scoring reads hidden states: the row's last token, then every token of each branch
        (a multi-token label's prefix, whose next-token distributions score the label's later tokens)."""
        positions = [len(row.ids) - 1]
        for offset, branch in zip(row.branch_offsets(), row.branches, strict=True):
            positions.extend(range(offset, offset + len(branch)))
        return positions

    def _label_scores(self, hidden: Any, label_ids: list[list[int]]) -> tuple[list[float], list[float]]:
        """Each label's summed token log-probability from the states `_label_reads` chose, and the
        probabilities normalised over the label set."""
        import torch

        logprobs = torch.log_softmax(self._logits(hidden).float(), dim=-1)
        scores = [float(logprobs[0, ids[0]]) for ids in label_ids]
        cursor = 1
        for k, ids in enumerate(label_ids):
            if len(ids) > 1:  # branches are laid out in label order, so their reads follow in that order
                for step, token in enumerate(ids[1:]):
                    scores[k] += float(logprobs[cursor + step, token])
                cursor += len(ids) - 1
        probs = torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=0).tolist()
        return scores, probs

    def _label_ids(self, labels: list[str]) -> list[list[int]]:
        """Token ids of each label as an answer; with EOS appended when some label is a prefix of another."""
        if not labels:
            raise ValueError("classify needs at least one label")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be distinct: {labels!r}")
        if any(not label for label in labels):
            raise ValueError("labels must be non-empty strings")
        ids = [self.encode_text(label) for label in labels]
        prefixed = any(a != b and b[: len(a)] == a for a in ids for b in ids)
        if prefixed:
            eos = self.tokenizer.eos_token_id
            ids = [[*label, eos] for label in ids]
        return ids

    def _logits(self, hidden: Any, vocabulary: Sequence[int] | None = None) -> Any:
        """Output logits for a few hidden states, optionally for a few vocabulary entries only."""
        head = self.loaded.model.get_output_embeddings()
        if vocabulary is None:
            return head(hidden)
        import torch

        rows = head.weight[torch.tensor(list(vocabulary), device=hidden.device)]
        logits = hidden @ rows.T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[torch.tensor(list(vocabulary), device=hidden.device)]
        return logits

    def feedback(self, items: list[FeedbackInput]) -> list[LLMResult]:
        """The 9 + 9 rubric per user turn: P(yes) of each category as a continuation of one shared prefix.

        With `feedback_method` calibrated or lexical, the calibrated classifier answers instead and this model is not
        loaded (the calibrated fit's hidden-state columns load the default model; the lexical fit loads none).
        """
        if self.feedback_method in CLASSIFIER_METHODS:
            return self._feedback_calibrated(items, self.feedback_method)
        with self._lock:
            template = self.templates["feedback"]
            head, tail = self.frame(template.system)
            lead_in = self.encode_text(template.assistant_prefix) if template.assistant_prefix else []
            branches = [self.encode_text(render(template.item, category=name)) for name in ALL_CATEGORIES]
            yes_ids, no_ids = self._answer_tokens(("yes", "Yes"), ("no", "No"))
            vocabulary = [*yes_ids, *no_ids]
            budget = self.context_tokens - len(head) - len(tail) - len(lead_in) - max(map(len, branches)) - 1
            rows: dict[int, _Row] = {}
            out: dict[int, LLMResult] = {}
            for index, item in enumerate(items):
                try:
                    fields = {
                        "history": item.history.strip() or "(none)",
                        "assistant_reply": item.assistant_reply,
                        "user_turn": item.user_turn,
                    }
                    user, _ = self.fit_fields(
                        template.user, fields, ["history", "assistant_reply"], budget, "user_turn"
                    )
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                rows[index] = _Row(user + tail + lead_in, branches)

            def reads(row: _Row) -> list[int]:
                ends = zip(row.branch_offsets(), row.branches, strict=True)
                return [offset + len(branch) - 1 for offset, branch in ends]

            def finish(index: int, hidden: Any, row: _Row) -> LLMResult:
                import torch

                probs = torch.softmax(self._logits(hidden, vocabulary).float(), dim=-1)
                p_yes = probs[:, : len(yes_ids)].sum(dim=-1).tolist()
                by_category = dict(zip(ALL_CATEGORIES, p_yes, strict=True))
                return LLMResult(
                    feedback_value(by_category, self.feedback_threshold), prompt_tokens=len(head) + len(row.flat),
                    probabilities=by_category,
                )

            self._score(tuple(head), rows, reads, finish, out)
            return [out[i] for i in range(len(items))]

    def judge(self, items: list[JudgeInput]) -> list[LLMResult]:
        """Pairwise verdicts by label scoring over the five verdicts (A++ ... B++), so an answer is always one.

        A verdict's score is the sum of its tokens' log-probabilities after the "Verdict:" lead-in (full
        vocabulary at every step), normalised over the five. The system prompt is shared by every row (one KV
        cache); the two answers are first capped to a third of the budget each, the same for both, so cutting
        never favours a position; then the conversation is cut from the middle, and the checklist never.
        """
        with self._lock:
            template = self.templates["judge"]
            head, tail = self.frame(template.system)
            lead = template.assistant_prefix
            lead_in = self.encode_text(lead) if lead else []
            space = " " if lead and not lead[-1].isspace() else ""
            label_ids = [self.encode_text(space + verdict) for verdict in VERDICTS]
            budget = self.context_tokens - len(head) - len(tail) - len(lead_in) - max(map(len, label_ids)) - 1
            branches = [ids[:-1] for ids in label_ids if len(ids) > 1]
            rows: dict[int, _Row] = {}
            out: dict[int, LLMResult] = {}
            for index, item in enumerate(items):
                try:
                    cap = max(1, budget // 3)
                    checklist = (item.checklist or "").strip()
                    fields = {
                        "prompt": item.prompt.strip() or "(none)",
                        "answer_a": self.cut_middle(item.answer_a, cap),
                        "answer_b": self.cut_middle(item.answer_b, cap),
                        "checklist": render(template.item, checklist=checklist) if checklist else "",
                    }
                    user, _ = self.fit_fields(
                        template.user, fields, ["prompt", "answer_a", "answer_b"], budget, "checklist"
                    )
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                rows[index] = _Row(user + tail + lead_in, branches)

            def finish(index: int, hidden: Any, row: _Row) -> LLMResult:
                _, probs = self._label_scores(hidden, label_ids)
                value = judge_value(probs)
                return LLMResult(
                    value, prompt_tokens=len(head) + len(row.flat), probability=value["probability"],
                    probabilities=dict(zip(VERDICTS, probs, strict=True)),
                )

            self._score(tuple(head), rows, self._label_reads, finish, out)
            return [out[i] for i in range(len(items))]

    def needs_model(self, function: str) -> bool:
        """Whether answering `function` loads the model: not for feedback under the calibrated classifier."""
        return not (function == "feedback_signal" and self.feedback_method in CLASSIFIER_METHODS)

    @staticmethod
    def _feedback_calibrated(items: list[FeedbackInput], method: str = "calibrated") -> list[LLMResult]:
        """The calibrated classifier's answers, all turns at once (its hidden-state columns run in batches).

        If the batch fails, each turn is tried alone, so one pathological input becomes one status row rather
        than a failed build, and an error every turn shares (no default model) shows on every row.
        """
        from wfsql.llm.calibrated import classifier_for

        classifier = classifier_for(method)
        triples = [(item.assistant_reply, item.user_turn, item.history) for item in items]
        started = time.perf_counter()
        try:
            answers = classifier.predict_many(triples)
        except Exception as error:
            _log.debug("calibrated feedback batch failed (%s); answering turn by turn", error)
            answers = None
        if answers is not None:
            latency = (time.perf_counter() - started) * 1000 / max(len(items), 1)
            return [_with_latency(LLMResult(value, probabilities=p), latency) for value, p in answers]
        out = []
        for triple in triples:
            started = time.perf_counter()
            try:
                value, probabilities = classifier.predict(*triple)
            except Exception as error:
                out.append(LLMResult.failure(f"{type(error).__name__}: {error}"))
                continue
            latency = (time.perf_counter() - started) * 1000
            out.append(_with_latency(LLMResult(value, probabilities=probabilities), latency))
        return out

    def _answer_tokens(self, yes: Sequence[str], no: Sequence[str]) -> tuple[list[int], list[int]]:
        """Single-token ids of yes/no answers as they follow "category:" (with and without a leading space)."""

        def ids(words: Sequence[str]) -> list[int]:
            found: list[int] = []
            for word in words:
                for variant in (f" {word}", word):
                    encoded = self.encode_text(variant)
                    if len(encoded) == 1 and encoded[0] not in found:
                        found.append(encoded[0])
            if not found:
                found.append(self.encode_text(f" {words[0]}")[0])
            return found

        return ids(yes), ids(no)

    # ----------------------------------------------------------------------------- decoding

    def _decode(
        self,
        prompts: Mapping[int, list[int]],
        *,
        prefix: Sequence[int] = (),
        processor: Any,
        max_new_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
        finish: Callable[[int, _Decoded, int], LLMResult],
        out: dict[int, LLMResult],
    ) -> None:
        """Batched greedy (or Gumbel-sampled) decoding of `prefix + prompts[i]`, length-sorted, with an optional
        outlines logits processor.

        `prefix` (the chat frame and system prompt, the same for every row) is encoded once per process and
        its KV cache reused, so a row costs only its own tokens (see `_generate_rows`).
        """
        from transformers import LogitsProcessorList, StoppingCriteriaList

        loaded = self.loaded
        model, tokenizer = loaded.model, loaded.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = _eos_ids(model, tokenizer)
        rows = self.generation_batch_size()
        head = tuple(prefix)
        lengths = {index: len(ids) for index, ids in prompts.items()}
        max_tokens = 1 << 18 if self.on_cuda else 16384  # prompt tokens per batch (KV cache memory)

        def run(indices: list[int]) -> list[LLMResult]:
            started = time.perf_counter()
            width = max(lengths[i] for i in indices)
            processors = []
            if processor is not None:
                processor.reset()
                processors.append(processor)
            if temperature > 0:
                seeds = [_row_seed(seed, [*head, *prompts[i]]) for i in indices]
                processors.append(GumbelSampler(seeds, temperature, width))
            criteria = StoppingCriteriaList([StopOnText(tokenizer, list(stop), width)]) if stop else None
            generated = self._generate_rows(
                head, [prompts[i] for i in indices], processors=LogitsProcessorList(processors),
                stopping=criteria, max_new_tokens=max_new_tokens, eos=eos, pad=pad,
            )
            share = (time.perf_counter() - started) * 1000 / len(indices)
            results = []
            for row, index in enumerate(indices):
                tokens = generated[row]
                cut = next((k for k, token in enumerate(tokens) if token in eos), None)
                ids = tokens if cut is None else tokens[:cut]
                text = tokenizer.decode(ids, skip_special_tokens=True)
                finished = cut is not None
                if stop:
                    hits = [text.find(s) for s in stop if s and s in text]
                    if hits:
                        text, finished = text[: min(hits)], True
                decoded = _Decoded(ids, text, finished)
                results.append(_with_latency(finish(index, decoded, len(head) + lengths[index]), share))
            return results

        for batch in self._batches(lengths, rows, max_tokens):
            self._isolated(batch, run, out)

    def _generate_rows(
        self,
        prefix: tuple[int, ...],
        rows: list[list[int]],
        *,
        processors: Any,
        stopping: Any,
        max_new_tokens: int,
        eos: list[int],
        pad: int,
    ) -> list[list[int]]:
        """Generated token ids of each row of one batch (a finished row continues with `pad`, as in
        transformers' `generate`, whose greedy loop this follows step for step).

        The prefix comes from the shared KV cache, the rows' own tokens are prefilled in chunks
        (right-padded, `_prefill_rows`), then one token per row per step is decoded into a cache allocated once
        for the whole batch. The processors and stopping criteria see `input_ids` as the rows' (padded)
        tokens followed by what was generated, like `generate` shows them.
        """
        import torch

        g = len(prefix)
        batch = len(rows)
        lengths = [len(ids) for ids in rows]
        width = max(lengths)
        cache = self._row_cache(prefix, batch, g + width + max_new_tokens)
        row_ids = _right_padded(rows, width, pad)
        with torch.inference_mode():
            # Prefill in groups of rows of similar length (the batch is sorted, so groups are contiguous), each
            # into its rows of the shared cache: padding the whole batch to its longest row would waste
            # compute, and prefill needs no large batch to keep the cores busy, unlike decoding.
            max_rows, max_tokens = self.scoring_batch_limits()
            lazy = cache.layers[0].buffers is None  # no prefix: buffers take their shape from the first call
            groups = [list(range(batch))] if lazy else self._batches(dict(enumerate(lengths)), max_rows, max_tokens)
            hidden = [None] * batch
            for group in groups:
                group.sort()
                first, last = group[0], group[-1] + 1
                group_width = max(lengths[first:last])
                view = cache if lazy else _growing_cache([layer.rows(first, last) for layer in cache.layers])
                states = self._prefill_rows(
                    view, g, row_ids[first:last, :group_width], lengths[first:last],
                    [[lengths[i] - 1] for i in range(first, last)],
                )
                for i in range(first, last):
                    hidden[i] = states[(i - first, lengths[i] - 1)]
                for layer in view.layers:  # columns past the group's longest row: masked, but must be finite
                    layer.fill_zeros(width - group_width)
            for layer in cache.layers:
                layer.length = g + width
            hidden = torch.stack(hidden)
            head = self.loaded.model.get_output_embeddings()
            # The decoding state lives where the model's outputs do (a GPU when there is one); the mask and
            # positions are built on the CPU, as for prefill, and `_run_model` moves them with each call.
            device = hidden.device
            allowed = torch.zeros((batch, 1, 1, g + width + max_new_tokens), dtype=torch.bool)
            allowed[:, :, :, :g] = True
            for i, n in enumerate(lengths):
                allowed[i, :, :, g : g + n] = True
            positions = torch.tensor(lengths, dtype=torch.long)[:, None] + g
            eos_ids = torch.tensor(eos, dtype=torch.long, device=device)
            unfinished = torch.ones(batch, dtype=torch.bool, device=device)
            # the rows the model still runs on (cache, mask and positions follow)
            active = torch.arange(batch, device=device)
            sequence = row_ids.to(device)
            for step in range(max_new_tokens):
                scores = head(hidden).float()
                if len(active) < batch:  # finished rows get pad whatever they score; processors see every row
                    scores = scores.new_zeros((batch, scores.shape[-1])).index_copy_(0, active, scores)
                scores = processors(sequence, scores)
                tokens = scores.argmax(dim=-1)
                tokens = torch.where(unfinished, tokens, torch.full_like(tokens, pad))
                sequence = torch.cat([sequence, tokens[:, None]], dim=1)
                unfinished &= ~torch.isin(tokens, eos_ids)
                if stopping is not None:
                    unfinished &= ~stopping(sequence, scores)
                if not unfinished.any() or step + 1 == max_new_tokens:
                    break
                still = unfinished[active]
                if int(still.sum()) <= len(active) // 2:
                    # Half the rows are done: keep decoding only the others. Each step reads every row's whole
                    # KV cache, so copying the survivors' cache once costs less than a few steps of dead rows.
                    kept = still.nonzero().flatten()
                    active = active[kept]
                    cache = _growing_cache([layer.select(kept) for layer in cache.layers])
                    kept_here = kept.cpu()
                    allowed, positions = allowed[kept_here], positions[kept_here]
                column = g + width + step
                allowed[:, :, :, column] = True
                step_tokens = tokens[active, None]
                hidden = self._run_model(cache, step_tokens, positions + step, allowed[..., : column + 1])[:, -1]
        return sequence[:, width:].tolist()

    def extract(
        self, texts: list[str], json_schema: dict[str, Any], *, instruction: str | None = None,
        max_new_tokens: int | None = None,
    ) -> list[LLMResult]:
        """JSON that validates against `json_schema`: outlines-constrained decoding, then validated again."""
        with self._lock:
            limit = max_new_tokens or self.spec.max_new_tokens
            try:
                import jsonschema

                validator_class = jsonschema.validators.validator_for(json_schema)
                validator_class.check_schema(json_schema)
                validator = validator_class(json_schema)
                processor = self.json_generator(json_schema).logits_processor
            except Exception as error:
                return [LLMResult.failure(f"unusable JSON schema: {type(error).__name__}: {error}") for _ in texts]
            template = self.templates["extract"]
            head, tail = self.frame(template.system)
            lead_in = self.encode_text(template.assistant_prefix) if template.assistant_prefix else []
            fields = {
                "instruction": instruction or DEFAULT_EXTRACT_INSTRUCTION,
                "schema": json.dumps(json_schema, sort_keys=True),
            }
            budget = self.context_tokens - len(head) - len(tail) - len(lead_in) - limit
            prompts: dict[int, list[int]] = {}
            out: dict[int, LLMResult] = {}
            for index, text in enumerate(texts):
                try:
                    user, _ = self.fit_fields(template.user, {**fields, "text": text}, ["text"], budget, "schema")
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                prompts[index] = user + tail + lead_in

            def finish(index: int, decoded: _Decoded, prompt_tokens: int) -> LLMResult:
                counts = {"prompt_tokens": prompt_tokens}
                if not decoded.finished:
                    return LLMResult.rejected(
                        f"the JSON was not complete after max_new_tokens={limit} tokens", **counts
                    )
                try:
                    value = json.loads(decoded.text)
                except json.JSONDecodeError as error:
                    return LLMResult.rejected(f"the output is not JSON: {error}", **counts)
                problem = next(iter(validator.iter_errors(value)), None)
                if problem is not None:
                    return LLMResult.rejected(f"the output does not validate: {problem.message}", **counts)
                return LLMResult(value, prompt_tokens=prompt_tokens, completion_tokens=len(decoded.ids))

            self._decode(
                prompts, prefix=head, processor=processor, max_new_tokens=limit, finish=finish, out=out
            )
            return [out[i] for i in range(len(texts))]

    def generate(
        self, prompts: list[str], *, system: str | None = None, max_new_tokens: int = 256, temperature: float = 0.0,
        seed: int | None = None, stop: list[str] | None = None,
    ) -> list[LLMResult]:
        """Free text: greedy at temperature 0; otherwise sampled, reproducibly per (seed, prompt)."""
        with self._lock:
            if max_new_tokens < 1:
                return [LLMResult.failure("max_new_tokens must be >= 1") for _ in prompts]
            if temperature < 0:
                return [LLMResult.failure("temperature must be >= 0") for _ in prompts]
            if temperature > 0 and seed is None:
                seed = int.from_bytes(hashlib.sha256(str(time.time_ns()).encode()).digest()[:4], "big")
            template = self.templates["generate"]
            head, tail = self.frame(system if system is not None else template.system)
            lead_in = self.encode_text(template.assistant_prefix) if template.assistant_prefix else []
            budget = self.context_tokens - len(head) - len(tail) - len(lead_in) - max_new_tokens
            encoded: dict[int, list[int]] = {}
            out: dict[int, LLMResult] = {}
            for index, prompt in enumerate(prompts):
                try:
                    if budget <= 0:
                        raise InputTooLongError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt")
                    user, _ = self.fit_fields(template.user, {"prompt": prompt}, ["prompt"], budget, "prompt")
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                encoded[index] = user + tail + lead_in

            def finish(index: int, decoded: _Decoded, prompt_tokens: int) -> LLMResult:
                return LLMResult(decoded.text, prompt_tokens=prompt_tokens, completion_tokens=len(decoded.ids))

            self._decode(
                encoded, prefix=head, processor=None, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                stop=stop, finish=finish, out=out,
            )
            return [out[i] for i in range(len(prompts))]

    def classify_by_decoding(
        self, texts: list[str], labels: list[str], *, instruction: str | None = None
    ) -> list[LLMResult]:
        """Constrained greedy decoding over the label set (outlines): the reference label scoring must match,
        and the batched-decoding baseline of the benchmark."""
        with self._lock:
            template = self.templates["classify"]
            head, tail = self.frame(template.system)
            lead_in = self.encode_text(template.assistant_prefix) if template.assistant_prefix else []
            processor = self.choice_generator(labels).logits_processor
            limit = max(len(self.encode_text(label)) for label in labels) + 2
            fields = {"instruction": instruction or DEFAULT_CLASSIFY_INSTRUCTION, "labels": ", ".join(labels)}
            budget = self.context_tokens - len(head) - len(tail) - len(lead_in) - limit
            prompts: dict[int, list[int]] = {}
            out: dict[int, LLMResult] = {}
            for index, text in enumerate(texts):
                try:
                    user, _ = self.fit_fields(template.user, {**fields, "text": text}, ["text"], budget, "instruction")
                except Exception as error:
                    out[index] = LLMResult.failure(f"{type(error).__name__}: {error}")
                    continue
                prompts[index] = user + tail + lead_in

            def finish(index: int, decoded: _Decoded, prompt_tokens: int) -> LLMResult:
                if decoded.text not in labels:
                    return LLMResult.rejected(f"decoded {decoded.text!r}, not one of the labels")
                return LLMResult(decoded.text, prompt_tokens=prompt_tokens, completion_tokens=len(decoded.ids))

            self._decode(
                prompts, prefix=head, processor=processor, max_new_tokens=limit, finish=finish, out=out
            )
            return [out[i] for i in range(len(texts))]


class GumbelSampler:
    """Sampling as argmax(logits / T + Gumbel noise), the noise seeded per (row seed, step).

    Equivalent to sampling from softmax(logits / T), but a row's sample depends only on its own seed, not on
    the batch it shares or the global RNG, so a seeded call is reproducible however the rows are batched.
    Runs after any outlines mask: masked tokens stay at -inf.
    """

    def __init__(self, seeds: list[int], temperature: float, prompt_width: int) -> None:
        self.seeds = seeds
        self.temperature = temperature
        self.prompt_width = prompt_width

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        step = input_ids.shape[1] - self.prompt_width
        noise = torch.empty(scores.shape, dtype=torch.float32)
        for row, seed in enumerate(self.seeds):
            generator = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))
            uniform = torch.rand(scores.shape[1], generator=generator).clamp_(1e-20, 1.0 - 1e-7)
            noise[row] = -torch.log(-torch.log(uniform))
        return scores.float() / self.temperature + noise.to(scores.device)


class StopOnText:
    """Stops a row once its generated text (never the prompt) contains a stop string.

    transformers' own `stop_strings` also match across the prompt boundary (a prompt ending in a newline
    plus one generated newline matches "\n\n"), which would end answers before they start.
    """

    def __init__(self, tokenizer: Any, stops: list[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stops = [stop for stop in stops if stop]
        self.prompt_width = prompt_width
        self.window = max((len(stop) for stop in self.stops), default=1) + 8  # tokens: at least a char each

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_width :]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for row in range(generated.shape[0]):
            tail = self.tokenizer.decode(generated[row, -self.window :].tolist(), skip_special_tokens=True)
            done[row] = any(stop in tail for stop in self.stops)
        return done


def _right_padded(rows: Sequence[Sequence[int]], width: int, pad: int) -> Any:
    """Token rows as one (rows, width) tensor, each padded with `pad` on the right."""
    import torch

    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def _row_seed(seed: int | None, prompt: list[int]) -> int:
    digest = hashlib.blake2b(f"{seed}:{','.join(map(str, prompt))}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        for token in value if isinstance(value, list) else [value]:
            if token is not None and token not in ids:
                ids.append(int(token))
    return ids


def _with_latency(result: LLMResult, latency_ms: float) -> LLMResult:
    from dataclasses import replace

    return replace(result, latency_ms=latency_ms)


@functools.cache
def _growing_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        """One layer's keys and values in buffers allocated once for `capacity` tokens: appending writes in
        place and hands attention a view of the filled part, where DynamicLayer concatenates the whole cache."""

        def __init__(self, batch: int, capacity: int) -> None:
            super().__init__()
            self.batch, self.capacity = batch, capacity
            self.buffers: tuple[Any, Any] | None = None
            self.length = 0

        def fill(self, key_states: Any, value_states: Any) -> None:
            import torch

            if self.buffers is None:
                self.device = key_states.device
                self.buffers = tuple(
                    torch.empty((self.batch, s.shape[1], self.capacity, s.shape[3]), dtype=s.dtype, device=s.device)
                    for s in (key_states, value_states)
                )
                self.is_initialized = True
            end = self.length + key_states.shape[-2]
            if end > self.capacity:
                raise RuntimeError(f"KV cache capacity {self.capacity} exceeded ({end} tokens)")
            self.buffers[0][:, :, self.length : end] = key_states
            self.buffers[1][:, :, self.length : end] = value_states
            self.length = end
            self.keys = self.buffers[0][:, :, :end]
            self.values = self.buffers[1][:, :, :end]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            self.fill(key_states, value_states)
            return self.keys, self.values

        def rows(self, first: int, last: int) -> Any:
            """A layer over rows first..last-1 of this one's buffers (writes land here), at the same length."""
            assert self.buffers is not None
            view = GrowingLayer(last - first, self.capacity)
            view.buffers = (self.buffers[0][first:last], self.buffers[1][first:last])
            view.device, view.is_initialized, view.length = self.device, True, self.length
            return view

        def select(self, index: Any) -> Any:
            """A layer holding only rows `index` (a copy of their filled part, same capacity)."""
            assert self.buffers is not None
            kept = GrowingLayer(len(index), self.capacity)
            kept.buffers = tuple(b.new_empty((len(index), *b.shape[1:])) for b in self.buffers)
            for new, old in zip(kept.buffers, self.buffers, strict=True):
                new[:, :, : self.length] = old[index, :, : self.length]
            kept.device, kept.is_initialized, kept.length = self.device, True, self.length
            kept.keys, kept.values = (b[:, :, : self.length] for b in kept.buffers)
            return kept

        def fill_zeros(self, count: int) -> None:
            if count > 0:
                assert self.buffers is not None
                shape = (*self.buffers[0].shape[:2], count, self.buffers[0].shape[3])
                zeros = self.buffers[0].new_zeros(shape)
                self.fill(zeros, self.buffers[1].new_zeros((*shape[:3], self.buffers[1].shape[3])))

        def get_seq_length(self) -> int:
            return self.length

    return GrowingLayer


def _growing_layer(keys: Any, values: Any, batch: int, capacity: int) -> Any:
    """A `GrowingLayer` for `batch` rows and `capacity` tokens, starting with `keys`/`values` when given (a
    prefix computed for one row, copied to every row)."""
    layer = _growing_layer_class()(batch, capacity)
    if keys is not None:
        layer.fill(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))
    return layer


def _growing_cache(layers: list[Any]) -> Any:
    from transformers.cache_utils import Cache

    return Cache(layers=layers)
