"""A training target as a step of `wfsql build` / `wfsql train`.

1. Read the pairs (canonical order, checksum) and store them in `training_data` once per checksum.
2. The run key is the target's fingerprint (settings + parents) + the data checksum + the base weights'
   identity + command-line overrides. A finished run with the same key is reused; an unfinished one
   (killed, failed) is resumed in its own folder from its last checkpoint; otherwise a new run starts.
3. The run folder gets `spec.json` and `data.jsonl`; the worker trains in this process, or under the
   target's `launch:` command (`accelerate launch ...`) in child processes.
4. `training_steps` mirrors the folder's `steps.jsonl` while it trains; `training_runs` gets the result,
   the target's `latest.json` points at the run, and the node's state row is written.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wfsql.errors import WfsqlError
from wfsql.nodes import TrainNode, fingerprint
from wfsql.results import NodeResult
from wfsql.training.config import STAGES, TrainingTarget
from wfsql.training.data import Snapshot, read_pairs, write_jsonl
from wfsql.training.registry import write_latest
from wfsql.training.store import TrainingStore

SYNC_SECONDS = 2.0  # how often training_steps catches up with steps.jsonl while a run trains


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def resolve_base_model(node: TrainNode, config: Any) -> tuple[str, str]:
    """(what from_pretrained loads, identity of the weights) for the target's `base_model`."""
    from wfsql.llm.models import ModelSpec, default_model_spec, ensure_converted, parse_model_config

    base = node.base_model
    models = (config.llm or {}).get("models") or {}
    raw = models.get(base) if isinstance(models, dict) else None
    try:
        if base == "default" or (
            isinstance(raw, dict) and raw.get("source") in (None, "default") and not raw.get("trained_from")
        ):
            spec = default_model_spec()
        elif isinstance(raw, dict):
            if raw.get("trained_from") is not None:
                from wfsql.training.registry import resolve_trained_model

                raw = resolve_trained_model(base, raw, config.root)
            allowed = ("source", "gguf_file", "revision")
            entry = {k: v for k, v in raw.items() if k in allowed}
            source = Path(str(entry["source"])).expanduser()
            if not source.is_absolute() and (config.root / source).exists():
                entry["source"] = str((config.root / source).resolve())
            spec = parse_model_config(base, entry)
        else:
            path = Path(base).expanduser()
            path = path if path.is_absolute() else config.root / path
            spec = ModelSpec(name=base, source=str(path.resolve()) if path.exists() else base)
        if spec.gguf_path is not None:
            return str(ensure_converted(spec)), spec.model_id
        return spec.source, spec.model_id
    except (ValueError, FileNotFoundError) as exc:
        raise WfsqlError(
            f"training target {node.name}: cannot use base_model {base!r}: {exc}",
            node=f"train {node.name}",
            hint="base_model takes 'default', a name under llm.models, a model folder or a hub id",
        ) from None


def execute_training(adapter: Any, node: TrainNode, config: Any, console: Any, options: Any) -> NodeResult:
    from wfsql.state import record_build

    cursor = adapter.cursor()
    store = TrainingStore(cursor, config.schema)
    store.ensure()
    snapshot = read_pairs(cursor, node)
    store.save_snapshot(snapshot)
    base_path, base_id = resolve_base_model(node, config)
    overrides = {k: options.extra[k] for k in ("max_steps",) if options.extra.get(k) is not None}
    run_key = fingerprint("run", node.fingerprint, snapshot.checksum, base_id, overrides)
    target = TrainingTarget(node.name, node.config, node.line)
    folder = target.output_root(config.root)
    prior = store.find_run(node.name, run_key)
    prior_dir = Path(prior["output_dir"]) if prior and prior.get("output_dir") else None

    if prior and not options.full_refresh and prior_dir is not None and prior_dir.is_dir():
        if prior["status"] == "success" and prior.get("model_dir") and Path(prior["model_dir"]).is_dir():
            with adapter.transaction() as transaction:
                record_build(transaction, node, str(prior_dir), "train")
            write_latest(folder, prior["run_id"], prior["model_dir"])
            return NodeResult(
                node.unique_id,
                node.name,
                "train",
                "reused",
                f"reused run {prior['run_id']} of {node.name} (same settings, base model and "
                f"{len(snapshot):,} pairs; --full-refresh retrains)",
            )
        run_id, run_dir, attempts = prior["run_id"], prior_dir, int(prior.get("attempts") or 0) + 1
        console.info(f"{node.name}: resuming unfinished run {run_id} from its last checkpoint")
    else:
        run_id = f"{_now().strftime('%Y%m%d-%H%M%S')}-{run_key[:6]}"
        run_dir, attempts = folder / run_id, 1
        run_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(snapshot, run_dir / "data.jsonl")
        spec = _spec(node, run_id, base_path, overrides)
        (run_dir / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
        store.insert_run(_run_row(node, run_id, run_key, spec, base_path, base_id, snapshot, run_dir))
    store.update_run(run_id, status="running", attempts=attempts, error=None)

    started = time.perf_counter()
    try:
        _train(node, run_dir, store, run_id, console)
    except Exception as exc:
        store.sync_steps(run_id, run_dir / "steps.jsonl")
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        store.update_run(run_id, status="failed", error=f"{type(exc).__name__}: {message}", finished_at=_now())
        if isinstance(exc, WfsqlError):
            raise
        raise WfsqlError(
            f"training target {node.name}, run {run_id}: {type(exc).__name__}: {message}",
            node=f"train {node.name}",
            hint=f"fix the cause and rerun `wfsql train {node.name}`: it resumes from the last checkpoint "
            f"(every {node.config.get('save_steps')} steps) in {run_dir}",
        ) from exc
    result = json.loads((run_dir / "result.json").read_text())
    store.sync_steps(run_id, run_dir / "steps.jsonl")
    final = _final_metrics(run_dir / "steps.jsonl", node.config["stages"][-1])
    stages = result["stages"]
    tokens = sum(int(s.get("tokens") or 0) for s in stages.values())
    train_seconds = sum(float(s.get("seconds") or 0) for s in stages.values())
    peaks = [s.get("peak_memory_gb") for s in stages.values() if s.get("peak_memory_gb") is not None]
    store.update_run(
        run_id,
        status="success",
        finished_at=_now(),
        seconds=time.perf_counter() - started,
        device=result["device"],
        precision=result["precision"],
        max_length=result["lengths"]["max_length"],
        max_prompt_length=result["lengths"]["max_prompt_length"],
        truncated_prompts=result["lengths"]["truncated_prompts"],
        model_dir=result["model_dir"],
        steps=sum(int(s.get("steps") or 0) for s in stages.values()),
        train_tokens=tokens,
        tokens_per_s=tokens / train_seconds if train_seconds else None,
        peak_memory_gb=max(peaks) if peaks else None,
        summary={"lengths": result["lengths"], "stages": stages, "processes": result.get("processes")},
        versions=result.get("versions") or {},
        **final,
    )
    write_latest(folder, run_id, result["model_dir"])
    with adapter.transaction() as transaction:
        record_build(transaction, node, str(run_dir), "train")
    parts = [f"{s} {stages[s]['steps']} steps" for s in node.config["stages"] if s in stages]
    loss = f", final loss {final['final_loss']:.4f}" if final.get("final_loss") is not None else ""
    accuracy = (
        f", reward accuracy {final['final_reward_accuracy']:.2f}"
        if final.get("final_reward_accuracy") is not None
        else ""
    )
    return NodeResult(
        node.unique_id,
        node.name,
        "train",
        "success",
        f"trained {node.name} run {run_id} on {len(snapshot):,} pairs ({', '.join(parts)}; {result['device']}, "
        f"{result['precision']}{loss}{accuracy}) -> {os.path.relpath(result['model_dir'], config.root)}",
        rows_affected=len(snapshot),
    )


def _spec(node: TrainNode, run_id: str, base_path: str, overrides: dict[str, Any]) -> dict[str, Any]:
    settings = dict(node.config)
    return {
        **{k: settings[k] for k in settings if k not in ("tags", "description", "enabled", "output_dir", "launch")},
        **{stage: settings.get(stage) or {} for stage in STAGES},
        "run_id": run_id,
        "target": node.name,
        "base_model_path": base_path,
        "max_steps_override": overrides.get("max_steps"),
    }


def _run_row(
    node: TrainNode,
    run_id: str,
    run_key: str,
    spec: dict[str, Any],
    base_path: str,
    base_id: str,
    snapshot: Snapshot,
    run_dir: Path,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "target": node.name,
        "status": "running",
        "run_key": run_key,
        "fingerprint": node.fingerprint,
        "config": spec,
        "base_model": node.base_model,
        "base_model_path": base_path,
        "base_model_id": base_id,
        "pairs_relation": snapshot.relation,
        "data_checksum": snapshot.checksum,
        "n_pairs": len(snapshot),
        "stages": list(node.config["stages"]),
        "lora": bool(node.config.get("lora")),
        "output_dir": str(run_dir),
        "attempts": 0,
        "started_at": _now(),
    }


def _train(node: TrainNode, run_dir: Path, store: TrainingStore, run_id: str, console: Any) -> None:
    steps_file = run_dir / "steps.jsonl"
    last = {"sync": time.monotonic(), "shown": time.monotonic()}

    def on_step(row: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last["sync"] >= SYNC_SECONDS:
            store.sync_steps(run_id, steps_file)
            last["sync"] = now
        if now - last["shown"] >= 10:
            last["shown"] = now
            console.info(f"  {node.name} {_describe_step(row)}")

    launch = node.config.get("launch")
    if not launch:
        from wfsql.training.worker import TrainingConfigError, train_run

        try:
            train_run(run_dir, on_step=on_step)
        except TrainingConfigError as exc:
            raise WfsqlError(
                f"training target {node.name}: {exc}", node=f"train {node.name}", hint="see docs/training.md"
            ) from None
        return
    command = [
        *shlex.split(launch.replace("{python}", shlex.quote(sys.executable))),
        "-m",
        "wfsql.training.worker",
        str(run_dir),
    ]
    console.info(f"{node.name}: {shlex.join(command)}")
    log_path = run_dir / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=str(run_dir))
        while process.poll() is None:
            time.sleep(SYNC_SECONDS)
            store.sync_steps(run_id, steps_file)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise WfsqlError(
            f"training target {node.name}: `{shlex.join(command)}` exited with {process.returncode}: "
            + " | ".join(tail),
            node=f"train {node.name}",
            hint=f"the whole log is {log_path}; rerun `wfsql train {node.name}` to resume",
        )


def _describe_step(row: dict[str, Any]) -> str:
    parts = [f"{row['stage']} step {row['step']}"]
    for key, label in (("loss", "loss"), ("rewards_accuracies", "reward acc"), ("rewards_margins", "margin")):
        if row.get(key) is not None:
            parts.append(f"{label} {row[key]:.4f}")
    if row.get("tokens_per_s"):
        parts.append(f"{row['tokens_per_s']:,.0f} tokens/s")
    return ", ".join(parts)


def _final_metrics(steps_file: Path, stage: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    if steps_file.exists():
        for line in steps_file.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("stage") == stage:
                    last = row
    return {
        "final_loss": last.get("loss"),
        "final_reward_accuracy": last.get("rewards_accuracies"),
        "final_reward_margin": last.get("rewards_margins"),
    }
