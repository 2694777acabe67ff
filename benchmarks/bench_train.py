"""One DPO step of the default model (SmolLM2-135M-Instruct) on 4 pairs, per precision, on this CPU.

    python benchmarks/bench_train.py [--precisions fp32 bf16] [--steps 1] [--lora]

Runs the training target (DPO only, batch 4) once per precision on the first 4 pairs of the sample
conversations (benchmarks/gpu_train.py's PAIRS_SQL, real text and lengths) and prints the seconds of each
optimizer step from `training_steps`. TRL's default autocasts to bf16, which most CPUs have no units
for: the training target picks fp32 on CPU (`precision: auto`).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import textwrap
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--max-length", type=int, default=512, help="tokens (long real prompts need GBs on CPU)")
    parser.add_argument("--conversations", type=int, default=40, help="sample conversations (0: the template's)")
    args = parser.parse_args()

    import duckdb

    from wfsql.api import Project
    from wfsql.console import Console

    spec = importlib.util.spec_from_file_location("gpu_train", Path(__file__).with_name("gpu_train.py"))
    assert spec is not None and spec.loader is not None
    gpu_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_train)
    for precision in args.precisions:
        root = Path(tempfile.mkdtemp(prefix=f"wfsql_bench_train_{precision}_"))
        gpu_train.write_conversations(root / "data" / "conversations.jsonl", args.conversations)
        (root / "models").mkdir()
        (root / "models" / "pairs.sql").write_text(gpu_train.PAIRS_SQL + "\nlimit 4")
        (root / "models" / "sources.yml").write_text(
            "version: 2\nsources:\n  - name: logs\n    tables:\n"
            "      - {name: conversations, path: data/conversations.jsonl, format: sharegpt}\n"
        )
        lora = "{r: 16, alpha: 32}" if args.lora else "false"
        (root / "wfsql_project.yml").write_text(
            textwrap.dedent(
                f"""
                name: bench_train
                threads: 1
                training:
                  train_dpo:
                    stages: [dpo]
                    dpo: {{max_steps: {args.steps}}}
                    lora: {lora}
                    batch_size: 4
                    precision: {precision}
                    max_length: {args.max_length}
                    max_prompt_length: {args.max_length * 3 // 4}
                """
            ).lstrip()
        )
        project = Project.load(root, console=Console(quiet=True))
        results = project.train()
        assert results.success, [r.message for r in results.results]
        with duckdb.connect(project.config.database, read_only=True) as con:
            rows = con.execute("select step, elapsed_s, num_tokens from training_steps order by step").fetchall()
            n_pairs, max_length = con.execute("select n_pairs, max_length from training_runs").fetchall()[0]
        previous = 0.0
        for step, elapsed, tokens in rows:
            print(
                f"{precision}: DPO step {step} on {n_pairs} pairs (max_length {max_length}, {tokens} tokens so far): "
                f"{elapsed - previous:.1f}s"
            )
            previous = elapsed


if __name__ == "__main__":
    main()
