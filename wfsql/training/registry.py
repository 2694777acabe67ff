"""Where a training target's trained models are, for `llm: {models: {NAME: {trained_from: TARGET}}}`.

Each finished run writes `<output_dir>/<target>/<run_id>/result.json`, and the target's folder keeps
`latest.json` naming the last finished run. `trained_from: train_dpo` loads that run's final model
(the merged model when LoRA was on); `run: <run_id>` next to it pins one run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wfsql.errors import WfsqlError

LATEST = "latest.json"


def target_folder(root: Path, target: str) -> Path:
    """`<output_dir>/<target>` as the project file declares it (default target/training/<target>)."""
    from wfsql.config import load_project
    from wfsql.training.config import project_targets

    try:
        targets = project_targets(load_project(root))
    except WfsqlError:
        targets = {}
    if target in targets:
        return targets[target].output_root(root)
    return root / "target" / "training" / target


def write_latest(folder: Path, run_id: str, model_dir: str) -> None:
    temporary = folder / (LATEST + ".tmp")
    temporary.write_text(json.dumps({"run_id": run_id, "model_dir": model_dir}, indent=2) + "\n")
    temporary.replace(folder / LATEST)


def trained_model_dir(root: Path, target: str, run: str | None = None, *, model: str = "") -> Path:
    """The final model of `run` (default: the latest finished run) of training target `target`."""
    folder = target_folder(root, target)
    label = f"llm model {model!r}: " if model else ""
    if run is None:
        latest = folder / LATEST
        if not latest.is_file():
            raise WfsqlError(
                f"{label}training target {target!r} has no finished run yet (no {latest})",
                hint=f"run `wfsql train {target}` first",
            )
        run = str(json.loads(latest.read_text())["run_id"])
    result = folder / run / "result.json"
    if not result.is_file():
        raise WfsqlError(
            f"{label}run {run!r} of training target {target!r} did not finish (no {result})",
            hint=f"pick a run with status 'success' from training_runs, or run `wfsql train {target}`",
        )
    model_dir = Path(json.loads(result.read_text())["model_dir"])
    if not model_dir.is_dir():
        raise WfsqlError(
            f"{label}the model of run {run!r} of {target!r} is gone ({model_dir})",
            hint=f"retrain with `wfsql train {target} --full-refresh`",
        )
    return model_dir


def resolve_trained_model(name: str, raw: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """An `llm.models` entry with `trained_from` → the same entry with `source:` set to the model folder."""
    source = raw["trained_from"]
    run = raw.get("run")
    if isinstance(source, dict):  # trained_from: {target: train_dpo, run: ...}
        run = source.get("run", run)
        source = source.get("target")
    model_dir = trained_model_dir(Path(root or "."), str(source), None if run is None else str(run), model=name)
    return {**{k: v for k, v in raw.items() if k not in ("trained_from", "run")}, "source": str(model_dir)}
