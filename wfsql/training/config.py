"""The `training:` block of `wfsql_project.yml`: one training target per name, validated.

Pure and cheap (no torch): compile reads it to make `TrainNode`s. Every problem names the file, the key
path and its line, says what was expected and what to do, and all problems of a block are reported at
once.

```yaml
training:
  train_dpo:
    base_model: default        # 'default', a model named under llm.models, a model directory, or a hub id
    pairs: pairs               # the model (or seed) whose rows are (prompt, chosen, rejected)
    stages: [sft, dpo]         # SFT on chosen, then DPO on the pairs; [dpo] skips SFT
    sft: {epochs: 1, learning_rate: 2.0e-5}
    dpo: {epochs: 1, learning_rate: 1.0e-6, beta: 0.1}
    lora: {r: 16, alpha: 32}   # or true (these defaults) / false (full fine-tuning)
    max_length: auto           # or a number of tokens; auto = from the data (see docs/training.md)
```
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wfsql.errors import Location, ProjectConfigError, did_you_mean
from wfsql.yamlfile import YamlDocument

STAGES = ("sft", "dpo")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down")
RESERVED_TABLES = ("training_runs", "training_steps", "training_data")
AUTO_MAX_LENGTH = 2048  # `max_length: auto` never exceeds this (nor the model's context)
AUTO_MAX_PROMPT_LENGTH = 1024  # `max_prompt_length: auto` never exceeds this (nor half the context)
HINT = "see docs/training.md for the keys a training target takes"

Problems = list[tuple[tuple[Any, ...], str]]
Check = Callable[[Any, tuple[Any, ...], Problems], Any]


@dataclass(frozen=True)
class Key:
    """One key of a mapping: a check that returns the normalised value (or records a problem)."""

    check: Check
    default: Any = None


# ---------------------------------------------------------------------------------------- checks


def _number(
    *, minimum: float | None = None, above: float | None = None, maximum: float | None = None, integer: bool = False
) -> Check:
    def check(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
        original = value
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as text: accept what float() reads
            with contextlib.suppress(ValueError):
                value = float(value) if not integer else int(value)
        if isinstance(value, bool) or not isinstance(value, int | float) or (integer and isinstance(value, float)):
            kind = "a whole number" if integer else "a number"
            problems.append((path, f"expected {kind}, got {type(original).__name__} {original!r}"))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((path, f"must be a finite number, got {original!r}"))
            return None
        if minimum is not None and value < minimum:
            problems.append((path, f"must be at least {minimum}, got {original!r}"))
        if above is not None and value <= above:
            problems.append((path, f"must be greater than {above}, got {original!r}"))
        if maximum is not None and value > maximum:
            problems.append((path, f"must be at most {maximum}, got {original!r}"))
        return value

    return check


def _optional(inner: Check) -> Check:
    def check(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
        return None if value is None else inner(value, path, problems)

    return check


def _auto_or(inner: Check) -> Check:
    def check(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
        if value is None or value == "auto":
            return "auto"
        return inner(value, path, problems)

    return check


def _text(*, choices: tuple[str, ...] | None = None) -> Check:
    def check(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
        if not isinstance(value, str) or not value.strip():
            problems.append((path, f"expected text, got {type(value).__name__} {value!r}"))
            return None
        if choices is not None and value not in choices:
            suggestion = did_you_mean(value, choices)
            problems.append(
                (path, f"{value!r} is not one of {', '.join(choices)}" + (f"; {suggestion}" if suggestion else ""))
            )
        return value

    return check


def _boolean(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
    if not isinstance(value, bool):
        problems.append((path, f"expected true or false, got {type(value).__name__} {value!r}"))
        return None
    return value


def _text_list(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((path, f"expected a list of names, got {value!r}"))
        return []
    return list(value)


def _stages(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        problems.append((path, "expected a non-empty list of stages, e.g. [sft, dpo] or [dpo]"))
        return list(STAGES)
    for index, stage in enumerate(value):
        if stage not in STAGES:
            suggestion = did_you_mean(str(stage), STAGES)
            problems.append(
                (
                    (*path, index),
                    f"unknown stage {stage!r}; stages are sft and dpo" + (f"; {suggestion}" if suggestion else ""),
                )
            )
    if len(set(value)) != len(value):
        problems.append((path, "a stage is listed twice"))
    elif all(s in STAGES for s in value) and list(value) != sorted(value, key=STAGES.index):
        problems.append((path, "SFT must come before DPO: write [sft, dpo]"))
    return list(value)


def _mapping(schema: dict[str, Key], what: str) -> Check:
    def check(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
        return validate(value if value is not None else {}, schema, path, problems, what)

    return check


LORA_SCHEMA: dict[str, Key] = {
    "r": Key(_number(minimum=1, integer=True), 16),
    "alpha": Key(_number(above=0), 32),
    "dropout": Key(_number(minimum=0, maximum=0.9), 0.05),
    "target_modules": Key(_text_list, "all-linear"),
}


def _lora(value: Any, path: tuple[Any, ...], problems: Problems) -> Any:
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        problems.append((path, f"expected true, false or a mapping (r, alpha, dropout, target_modules), got {value!r}"))
        return None
    lora = validate(value, LORA_SCHEMA, path, problems, "lora")
    if lora.get("target_modules") == ["all-linear"]:
        lora["target_modules"] = "all-linear"
    return lora


def _stage_schema(stage: str) -> dict[str, Key]:
    schema = {
        "epochs": Key(_number(above=0), 1),
        "learning_rate": Key(_number(above=0, maximum=1), 2.0e-5 if stage == "sft" else 1.0e-6),
        "max_steps": Key(_optional(_number(minimum=1, integer=True))),
        "batch_size": Key(_optional(_number(minimum=1, integer=True))),
        "warmup_ratio": Key(_number(minimum=0, maximum=0.99), 0.0),
        "lr_scheduler": Key(_text(choices=SCHEDULERS), "linear"),
        "weight_decay": Key(_number(minimum=0), 0.0),
    }
    if stage == "dpo":
        schema["beta"] = Key(_number(above=0), 0.1)
        schema["loss_type"] = Key(_text(choices=DPO_LOSSES), "sigmoid")
    return schema


TARGET_SCHEMA: dict[str, Key] = {
    "base_model": Key(_text(), "default"),
    "pairs": Key(_text(), "pairs"),
    "where": Key(_optional(_text())),
    "stages": Key(_stages, list(STAGES)),
    "sft": Key(_mapping(_stage_schema("sft"), "sft"), {}),
    "dpo": Key(_mapping(_stage_schema("dpo"), "dpo"), {}),
    "lora": Key(_lora, True),
    "batch_size": Key(_number(minimum=1, integer=True), 2),
    "gradient_accumulation_steps": Key(_number(minimum=1, integer=True), 1),
    "max_length": Key(_auto_or(_number(minimum=16, integer=True)), "auto"),
    "max_prompt_length": Key(_auto_or(_number(minimum=8, integer=True)), "auto"),
    "precision": Key(_text(choices=PRECISIONS), "auto"),
    "device": Key(_text(choices=DEVICES), "auto"),
    "gradient_checkpointing": Key(_boolean, False),
    "seed": Key(_number(minimum=0, integer=True), 0),
    "save_steps": Key(_number(minimum=1, integer=True), 100),
    "logging_steps": Key(_number(minimum=1, integer=True), 1),
    "output_dir": Key(_text(), "target/training"),
    "launch": Key(_optional(_text())),
    "enabled": Key(_boolean, True),
    "tags": Key(_text_list, []),
    "description": Key(_optional(_text())),
}

# Keys that change where or how a run is launched or shown, not what it computes: left out of fingerprints.
NOT_FINGERPRINTED = ("output_dir", "launch", "enabled", "tags", "description", "logging_steps", "save_steps")


def validate(data: Any, schema: dict[str, Key], path: tuple[Any, ...], problems: Problems, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        problems.append((path, f"{what} must be a mapping of keys, got {type(data).__name__} {data!r}"))
        data = {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        spec = schema.get(str(key))
        if spec is None:
            suggestion = did_you_mean(str(key), schema)
            problems.append(
                ((*path, key), "unknown key" + (f"; {suggestion}" if suggestion else f" (known: {', '.join(schema)})"))
            )
            continue
        out[str(key)] = spec.check(value, (*path, key), problems)
    for key, spec in schema.items():
        if key not in out:  # defaults go through the same check (nested mappings fill in their own)
            out[key] = None if spec.default is None else spec.check(_copy(spec.default), (*path, key), problems)
    return out


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


# -------------------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TrainingTarget:
    """One validated training target: its name, settings and where it was declared."""

    name: str
    settings: dict[str, Any]
    line: int | None

    @property
    def enabled(self) -> bool:
        return bool(self.settings["enabled"])

    def fingerprint_basis(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k not in NOT_FINGERPRINTED}

    def output_root(self, root: Path) -> Path:
        path = Path(self.settings["output_dir"]).expanduser()
        return (path if path.is_absolute() else root / path) / self.name


def parse_training(raw: Any, doc: YamlDocument | None, config_path: Path) -> dict[str, TrainingTarget]:
    """All targets of the `training:` block; one ProjectConfigError listing every problem otherwise."""
    problems: Problems = []
    targets: dict[str, TrainingTarget] = {}
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append((("training",), "must be a mapping of target names to their settings"))
        raw = {}
    for name, value in raw.items():
        path = ("training", name)
        if not isinstance(name, str) or not name.isidentifier():
            problems.append(
                (path, f"{name!r} is not a valid target name (letters, digits, _; not starting with a digit)")
            )
            continue
        settings = validate(
            value if value is not None else {}, TARGET_SCHEMA, path, problems, f"training target {name!r}"
        )
        stages = settings.get("stages") or []
        for stage in STAGES:
            if stage not in stages and isinstance(value, dict) and value.get(stage) is not None:
                problems.append(
                    (
                        (*path, stage),
                        f"settings for stage {stage!r}, but stages is {stages}: add it to stages or remove this",
                    )
                )
        targets[name] = TrainingTarget(name, settings, doc.line_of(path) if doc else None)
    if problems:
        raise training_error(problems, doc, config_path)
    return targets


def training_error(problems: Problems, doc: YamlDocument | None, config_path: Path) -> ProjectConfigError:
    lines = []
    for key_path, message in problems:
        key = ".".join(str(part) for part in key_path)
        line = doc.line_of(key_path) if doc else None
        lines.append(f"{key}" + (f" (line {line})" if line else "") + f": {message}")
    first_line = doc.line_of(problems[0][0]) if doc else None
    return ProjectConfigError("; ".join(lines), location=Location(config_path, first_line), node="training", hint=HINT)


def project_targets(config: Any) -> dict[str, TrainingTarget]:
    """The training targets of a loaded ProjectConfig."""
    return parse_training(getattr(config, "training", None) or None, config.document, config.config_path)
