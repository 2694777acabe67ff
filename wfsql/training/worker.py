"""One training run, from its folder alone: TRL's SFTTrainer then DPOTrainer, PEFT for LoRA.

    python -m wfsql.training.worker RUN_DIR
    accelerate launch --config_file fsdp.yaml -m wfsql.training.worker RUN_DIR   # many GPUs, DeepSpeed, FSDP

The folder holds `spec.json` (what to train, written by `wfsql train`) and `data.jsonl` (the exact pairs).
The worker never opens the database: it writes `steps.jsonl` (one line per logged step), per stage a
`done.json`, and at the end `result.json`; wfsql mirrors them into DuckDB. Everything here runs the same
in one process or in each process of an `accelerate launch`; only the main process writes files.

Each stage starts from the previous stage's model (the base model for the first): with LoRA the
adapter is trained, saved, and merged into a full model for the next stage and for use; without LoRA
the full model is trained. A stage that finished is skipped on a rerun, and an interrupted stage
resumes from its last checkpoint (`save_steps`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from wfsql.training.config import AUTO_MAX_LENGTH, AUTO_MAX_PROMPT_LENGTH
from wfsql.training.data import read_jsonl

StepHook = Callable[[dict[str, Any]], None]
EXTRA_CALLBACKS: list[Any] = []  # more TrainerCallbacks for every stage (tests use it to interrupt a run)

_METRIC_COLUMNS = {
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "rewards/chosen": "rewards_chosen",
    "rewards/rejected": "rewards_rejected",
    "rewards/margins": "rewards_margins",
    "rewards/accuracies": "rewards_accuracies",
    "logps/chosen": "logps_chosen",
    "logps/rejected": "logps_rejected",
    "mean_token_accuracy": "mean_token_accuracy",
    "entropy": "entropy",
    "num_tokens": "num_tokens",
}


class TrainingConfigError(ValueError):
    """Settings that cannot work with this model or data (a max_length shorter than the prompts...)."""


# --------------------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Hardware:
    device: str  # cpu | cuda
    precision: str  # fp32 | bf16 | fp16
    processes: int


def resolve_hardware(device: str, precision: str) -> Hardware:
    """CUDA when there is one (unless `device: cpu`); bf16 where the GPU has it, fp16 on older GPUs, and
    fp32 on CPU: TRL's default bf16 autocast has no hardware units on most CPUs (a 4-pair DPO step of
    SmolLM2-135M took 76 s that way and 9.5 s in fp32 on this project's 2-core machine)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingConfigError("device: cuda, but torch sees no CUDA device (use device: auto or cpu)")
    if precision == "auto":
        gpu_precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp16"
        precision = gpu_precision if device == "cuda" else "fp32"
    if precision == "fp16" and device == "cpu":
        raise TrainingConfigError("precision: fp16 needs a GPU (use fp32 or bf16 on CPU)")
    return Hardware(device, precision, _state(cpu=device == "cpu").num_processes)


def _state(**kwargs: Any) -> Any:
    """accelerate's view of the processes (one, or those an `accelerate launch` started)."""
    from accelerate import PartialState

    return PartialState(**kwargs)


def _is_main() -> bool:
    return bool(_state().is_main_process)


# --------------------------------------------------------------------------------------- lengths


@dataclass(frozen=True)
class Lengths:
    max_length: int
    max_prompt_length: int
    longest_prompt: int  # tokens, before truncation
    longest_completion: int
    truncated_prompts: int  # prompts shortened to max_prompt_length (oldest turns dropped first)
    truncated_pairs: int  # pairs whose prompt + longer reply exceed max_length (the reply's end is cut)
    context: int


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _prompt_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return _count(tokenizer, text)


def _shorten(tokenizer: Any, messages: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """Drop the oldest turns (a system message stays) until the prompt fits; then cut the start of the
    last user message. The prompt still ends with that user message."""
    system = [m for m in messages if m["role"] == "system"][:1]
    turns = [m for m in messages if m["role"] != "system"]
    while len(turns) > 1 and _prompt_tokens(tokenizer, system + turns) > limit:
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":
            turns = turns[1:]
    if _prompt_tokens(tokenizer, system + turns) > limit:
        last = turns[-1]
        overhead = _prompt_tokens(tokenizer, [*system, {"role": last["role"], "content": ""}])
        ids = tokenizer(last["content"], add_special_tokens=False)["input_ids"]
        keep = max(1, limit - overhead - 1)
        turns = [{"role": last["role"], "content": tokenizer.decode(ids[-keep:])}]
    return system + turns


def fit_lengths(
    rows: list[dict[str, Any]], tokenizer: Any, max_length: Any, max_prompt_length: Any, context: int
) -> tuple[list[dict[str, Any]], Lengths]:
    """Token lengths from the data: `auto` takes the longest prompt and reply, within the caps and the
    model's context; prompts over `max_prompt_length` lose their oldest turns."""
    prompt_lengths = [_prompt_tokens(tokenizer, row["prompt"]) for row in rows]
    completion_lengths = [max(_count(tokenizer, row["chosen"]), _count(tokenizer, row["rejected"])) + 2 for row in rows]
    if max_prompt_length == "auto":
        max_prompt_length = min(max(prompt_lengths), AUTO_MAX_PROMPT_LENGTH, context // 2)
    if max_length == "auto":
        max_length = min(max_prompt_length + max(completion_lengths), AUTO_MAX_LENGTH, context)
    if max_length > context:
        raise TrainingConfigError(f"max_length {max_length} exceeds the model's context of {context} tokens")
    if max_length < max_prompt_length + 8:
        raise TrainingConfigError(
            f"max_length {max_length} leaves no room for a reply after prompts of up to {max_prompt_length} tokens: "
            "raise max_length or lower max_prompt_length (or set both to auto)"
        )
    fitted, truncated = [], 0
    for row, length in zip(rows, prompt_lengths, strict=True):
        if length > max_prompt_length:
            truncated += 1
            row = {**row, "prompt": _shorten(tokenizer, row["prompt"], max_prompt_length)}
        fitted.append(row)
    over = sum(
        1 for p, c in zip(prompt_lengths, completion_lengths, strict=True) if min(p, max_prompt_length) + c > max_length
    )
    return fitted, Lengths(
        max_length=int(max_length),
        max_prompt_length=int(max_prompt_length),
        longest_prompt=max(prompt_lengths),
        longest_completion=max(completion_lengths),
        truncated_prompts=truncated,
        truncated_pairs=over,
        context=context,
    )


# -------------------------------------------------------------------------------------- metrics


def _metrics_callback(run_id: str, target: str, stage: str, steps_file: Path, on_step: StepHook | None) -> Any:
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        """One row per logged step into steps.jsonl (main process only), and to `on_step`."""

        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.summary: dict[str, Any] = {}

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any):
            if not state.is_world_process_zero or not logs:
                return
            if "train_runtime" in logs:  # the end-of-training summary, not a step
                self.summary = dict(logs)
                return
            elapsed = time.perf_counter() - self.started
            tokens = logs.get("num_tokens")  # TRL counts the tokens this trainer has seen
            row: dict[str, Any] = {
                "run_id": run_id,
                "target": target,
                "stage": stage,
                "step": int(state.global_step),
                "epoch": logs.get("epoch", state.epoch),
                **{column: logs.get(key) for key, column in _METRIC_COLUMNS.items()},
                "tokens_per_s": (float(tokens) / elapsed) if tokens and elapsed > 0 else None,
                "elapsed_s": elapsed,
                "logged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "metrics": {k: v for k, v in logs.items() if isinstance(v, int | float)},
            }
            if row["num_tokens"] is not None:
                row["num_tokens"] = int(row["num_tokens"])
            with steps_file.open("ab") as handle:
                handle.write(orjson.dumps(row) + b"\n")
            if on_step is not None:
                on_step(row)

    return MetricsCallback()


def _drop_steps(steps_file: Path, stage: str, after: int) -> None:
    """Forget logged steps of `stage` past `after` (they are redone when a stage resumes from a checkpoint)."""
    if not steps_file.exists():
        return
    kept = []
    for line in steps_file.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if row.get("stage") != stage or int(row.get("step", 0)) <= after:
            kept.append(line)
    steps_file.write_bytes(b"".join(line + b"\n" for line in kept))


# --------------------------------------------------------------------------------------- stages


def _last_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    complete = [p for p in found if (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[-1])) if complete else None


def _stage_arguments(
    stage: str, spec: dict[str, Any], hardware: Hardware, lengths: Lengths, output: Path, max_steps: int | None
) -> Any:
    import torch
    from trl import DPOConfig, SFTConfig

    settings = spec[stage]
    steps = max_steps or settings.get("max_steps") or -1
    common: dict[str, Any] = {
        "output_dir": str(output),
        "per_device_train_batch_size": int(settings.get("batch_size") or spec["batch_size"]),
        "gradient_accumulation_steps": int(spec["gradient_accumulation_steps"]),
        "learning_rate": float(settings["learning_rate"]),
        "num_train_epochs": float(settings["epochs"]),
        "max_steps": int(steps),
        "lr_scheduler_type": settings["lr_scheduler"],
        "warmup_steps": float(settings["warmup_ratio"]),
        "weight_decay": float(settings["weight_decay"]),
        "logging_steps": int(spec["logging_steps"]),
        "save_strategy": "steps",
        "save_steps": int(spec["save_steps"]),
        "save_total_limit": 1,
        "bf16": hardware.precision == "bf16",
        "fp16": hardware.precision == "fp16",
        "use_cpu": hardware.device == "cpu",
        "gradient_checkpointing": bool(spec["gradient_checkpointing"]),
        "seed": int(spec["seed"]),
        "data_seed": int(spec["seed"]),
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "max_length": lengths.max_length,
        "model_init_kwargs": {"dtype": torch.float32},  # fp32 master weights; bf16/fp16 is autocast
    }
    if stage == "sft":
        return SFTConfig(**common)
    return DPOConfig(**common, beta=float(settings["beta"]), loss_type=[settings["loss_type"]])


def _stage_dataset(stage: str, rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    if stage == "sft":  # SFT on the chosen replies; the loss covers the reply only (prompt-completion data)
        return Dataset.from_list(
            [{"prompt": r["prompt"], "completion": [{"role": "assistant", "content": r["chosen"]}]} for r in rows]
        )
    return Dataset.from_list(
        [
            {
                "prompt": r["prompt"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
            for r in rows
        ]
    )


def _lora_config(spec: dict[str, Any]) -> Any:
    if not spec.get("lora"):
        return None
    from peft import LoraConfig

    lora = spec["lora"]
    return LoraConfig(
        r=int(lora["r"]),
        lora_alpha=float(lora["alpha"]),
        lora_dropout=float(lora["dropout"]),
        target_modules=lora["target_modules"],
        task_type="CAUSAL_LM",
    )


def _merge_adapter(base: str, adapter: Path, output: Path, tokenizer: Any) -> None:
    """Base + LoRA adapter → one plain model directory (what the next stage and `llm:` load)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(output, ignore_errors=True)
    tmp.replace(output)


def _run_stage(
    stage: str,
    spec: dict[str, Any],
    run_dir: Path,
    model_in: str,
    rows: list[dict[str, Any]],
    tokenizer: Any,
    hardware: Hardware,
    lengths: Lengths,
    on_step: StepHook | None,
    callbacks: Sequence[Any],
) -> dict[str, Any]:
    import torch
    from trl import DPOTrainer, SFTTrainer

    stage_dir = run_dir / stage
    checkpoints = stage_dir / "checkpoints"
    steps_file = run_dir / "steps.jsonl"
    resume = _last_checkpoint(checkpoints)
    is_main = _is_main()
    if is_main:
        stage_dir.mkdir(parents=True, exist_ok=True)
        _drop_steps(steps_file, stage, int(resume.name.split("-")[-1]) if resume else 0)
    args = _stage_arguments(stage, spec, hardware, lengths, checkpoints, spec.get("max_steps_override"))
    metrics = _metrics_callback(spec["run_id"], spec["target"], stage, steps_file, on_step)
    trainer_class = SFTTrainer if stage == "sft" else DPOTrainer
    started = time.perf_counter()
    if hardware.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = trainer_class(
        model=model_in,
        args=args,
        train_dataset=_stage_dataset(stage, rows),
        processing_class=tokenizer,
        peft_config=_lora_config(spec),
        callbacks=[metrics, *callbacks, *EXTRA_CALLBACKS],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # steps are reported through steps.jsonl and wfsql's console
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    model_dir = stage_dir / "model"
    if spec.get("lora"):
        trainer.save_model(str(stage_dir / "adapter"))
        trainer.accelerator.wait_for_everyone()
        if is_main:
            _merge_adapter(model_in, stage_dir / "adapter", model_dir, tokenizer)
    else:
        trainer.save_model(str(model_dir))
        if is_main:
            tokenizer.save_pretrained(str(model_dir))
    trainer.accelerator.wait_for_everyone()
    peak = torch.cuda.max_memory_allocated() / 2**30 if hardware.device == "cuda" else _peak_rss_gb()
    tokens = int(getattr(trainer, "_total_train_tokens", 0) or 0)
    done = {
        "stage": stage,
        "model_dir": str(model_dir),
        "adapter_dir": str(stage_dir / "adapter") if spec.get("lora") else None,
        "steps": int(trainer.state.global_step),
        "seconds": seconds,
        "train_loss": float(output.training_loss),
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        "peak_memory_gb": peak,
        "resumed_from": resume.name if resume else None,
        "trainer_summary": metrics.summary,
    }
    if is_main:
        (stage_dir / "done.json").write_text(json.dumps(done, indent=2, default=str) + "\n")
        shutil.rmtree(checkpoints, ignore_errors=True)  # only for resuming; the stage is done
    trainer.accelerator.wait_for_everyone()
    del trainer
    return done


def _quiet_progress_bars() -> None:
    """No per-file progress bars from datasets and transformers in the middle of wfsql's output."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _peak_rss_gb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    except (ImportError, OSError):  # pragma: no cover
        return None


# ------------------------------------------------------------------------------------------ run


def train_run(run_dir: str | Path, *, on_step: StepHook | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train every stage of the run in `run_dir` that is not done yet; write and return result.json."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "spec.json").read_text())
    started = time.perf_counter()
    _quiet_progress_bars()
    hardware = resolve_hardware(spec["device"], spec["precision"])
    base = spec["base_model_path"]
    local = {"local_files_only": True} if Path(base).exists() else {}
    tokenizer = AutoTokenizer.from_pretrained(base, **local)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise TrainingConfigError(
            f"the tokenizer of {spec['base_model']} has no chat template; the pairs are conversations"
        )
    model_config = AutoConfig.from_pretrained(base, **local)
    context = int(getattr(model_config, "max_position_embeddings", 0) or AUTO_MAX_LENGTH)
    rows, lengths = fit_lengths(
        read_jsonl(run_dir / "data.jsonl"), tokenizer, spec["max_length"], spec["max_prompt_length"], context
    )
    torch.manual_seed(int(spec["seed"]))
    model_in = base
    stages: dict[str, Any] = {}
    for stage in spec["stages"]:
        done_file = run_dir / stage / "done.json"
        if done_file.is_file():
            stages[stage] = json.loads(done_file.read_text())
        else:
            stages[stage] = _run_stage(
                stage, spec, run_dir, model_in, rows, tokenizer, hardware, lengths, on_step, callbacks
            )
        model_in = stages[stage]["model_dir"]
    result = {
        "run_id": spec["run_id"],
        "model_dir": model_in,
        "device": hardware.device,
        "precision": hardware.precision,
        "processes": hardware.processes,
        "lengths": asdict(lengths),
        "stages": stages,
        "seconds": time.perf_counter() - started,
        "versions": _versions(),
    }
    if _is_main():
        (run_dir / "result.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    out = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "-"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m wfsql.training.worker RUN_DIR", file=sys.stderr)
        return 2
    try:
        train_run(arguments[0])
    except TrainingConfigError as error:
        print(f"training configuration error: {error}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
