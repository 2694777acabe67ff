"""The pairwise judge (`llm_judge`, label scoring over A++ ... B++) on real conversations: speed, position bias.

Usage: ``python benchmarks/bench_judge.py [--n 24] [--model default] [--json PATH]``

Inputs: `n` real ShareGPT exchanges (the conversation up to an assistant reply, capped at --prompt-chars).
Each is judged between the reply the assistant really gave (on topic) and the reply of another conversation
(off topic, a known-worse answer), in both orders (on-topic as A, then as B), with a generic checklist and
without one: 4 x n judgments. Reported per mode:

- judgments/s (the backend's label scoring; the shared system prompt's KV cache computed once);
- win rate of the on-topic reply (tie = half, both orders; a judge that reads the replies should be near 1),
  with its bootstrap 95% interval;
- position bias: share of examples whose two orders disagree; first-position share: share of decided
  judgments that favoured answer A.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_llm import _records

from wfsql.eval.winrate import summarise
from wfsql.llm import TransformersBackend, default_model_spec
from wfsql.llm.judge import JudgeInput, outcome

CHECKLIST = "- answers the user's last message\n- stays on the conversation's topic"


def load_exchanges(n: int, prompt_chars: int, reply_chars: int, seed: int = 3) -> list[tuple[str, str]]:
    """(conversation text up to an assistant reply, that reply), one per conversation."""
    out: list[tuple[str, str]] = []
    for record in _records(max(6 * n, 200), seed):
        messages = [m for m in record.get("conversations") or [] if isinstance(m.get("value"), str)]
        if len(messages) < 2 or messages[0].get("from") != "human" or messages[1].get("from") != "gpt":
            continue
        prompt, reply = messages[0]["value"].strip(), messages[1]["value"].strip()
        if not prompt or not reply or len(prompt) > 4 * prompt_chars:
            continue
        out.append((f"User: {prompt[-prompt_chars:]}", reply[:reply_chars]))
        if len(out) >= n:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--prompt-chars", type=int, default=1200)
    parser.add_argument("--reply-chars", type=int, default=600)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    exchanges = load_exchanges(args.n, args.prompt_chars, args.reply_chars)
    n = len(exchanges)
    backend = TransformersBackend(default_model_spec())
    started = time.perf_counter()
    backend.judge([JudgeInput("User: hi", "Hello!", "Hi!", None)])  # load, system prompt KV cache
    load_seconds = time.perf_counter() - started
    report: dict[str, object] = {"n": n, "model": backend.model_id, "load_and_first_call_s": round(load_seconds, 2)}
    print(f"{n} exchanges; model {backend.model_id}; load + first call {load_seconds:.1f}s")
    for mode, checklist in (("checklist", CHECKLIST), ("none", None)):
        items = []
        for i, (prompt, good) in enumerate(exchanges):
            off_topic = exchanges[(i + 1) % n][1]
            items += [JudgeInput(prompt, good, off_topic, checklist), JudgeInput(prompt, off_topic, good, checklist)]
        started = time.perf_counter()
        results = backend.judge(items)
        seconds = time.perf_counter() - started
        verdicts = [r.value["verdict"] if r.status == "ok" else None for r in results]
        scores = [r.value["score"] if r.status == "ok" else None for r in results]
        outcomes = [(outcome(verdicts[2 * i], True), outcome(verdicts[2 * i + 1], False)) for i in range(n)]
        points = [(scores[2 * i], None if scores[2 * i + 1] is None else -scores[2 * i + 1]) for i in range(n)]
        summary = summarise(outcomes, points, seed=0)
        tokens = sum(r.prompt_tokens for r in results) / max(len(results), 1)
        row = {
            "judgments": len(items),
            "seconds": round(seconds, 1),
            "judgments_per_s": round(len(items) / seconds, 3),
            "mean_prompt_tokens": round(tokens),
            "errors": sum(v is None for v in verdicts),
            "verdicts": {v: verdicts.count(v) for v in sorted(set(filter(None, verdicts)))},
            **summary.as_dict(),
        }
        report[mode] = row
        print(
            f"[{mode}] {len(items)} judgments in {seconds:.1f}s = {len(items) / seconds:.2f}/s "
            f"(~{tokens:.0f} prompt tokens each); on-topic win rate {summary.win_rate:.3f} "
            f"[{summary.ci_low:.3f}, {summary.ci_high:.3f}]; position bias {summary.position_bias:.2f}; "
            f"first-position share {summary.first_position_share}; mean score {summary.mean_score:+.3f}; "
            f"verdicts {row['verdicts']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
