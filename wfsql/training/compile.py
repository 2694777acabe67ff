"""Training targets as nodes of the DAG (called by the compiler; pure, no database, no torch).

A target depends on its pairs model; a target whose `base_model` is another target's trained model
depends on that target; a model that calls an LLM named in `llm.models` with `trained_from: X` (by
`model := 'name'` in its SQL, or by a role in its `config(llm=...)`) depends on target X, so
`wfsql build --select +that_model` trains first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from wfsql.config import ProjectConfig
from wfsql.errors import CompileError, DependencyError, Location, did_you_mean
from wfsql.nodes import Relation, TrainNode, fingerprint
from wfsql.training.config import HINT, RESERVED_TABLES, TrainingTarget, project_targets

_MODEL_ARGUMENT = re.compile(r"model\s*:=\s*'([^']+)'", re.IGNORECASE)


@dataclass
class TrainingGraph:
    nodes: dict[str, TrainNode] = field(default_factory=dict)  # fingerprint: the basis, before parents
    parents: dict[str, list[str]] = field(default_factory=dict)
    model_parents: dict[str, list[str]] = field(default_factory=dict)  # model uid → training targets it needs


def trained_models(config: ProjectConfig) -> dict[str, str]:
    """llm.models names declared with `trained_from: TARGET` → TARGET."""
    models = (config.llm or {}).get("models") or {}
    out = {}
    for name, spec in models.items() if isinstance(models, dict) else ():
        if isinstance(spec, dict) and spec.get("trained_from") is not None:
            target = spec["trained_from"]
            out[str(name)] = str(target.get("target") if isinstance(target, dict) else target)
    return out


def build_training_graph(
    config: ProjectConfig,
    relations: dict[str, tuple[str, Relation]],
    models: dict[str, tuple[str, dict[str, Any], str]],
) -> TrainingGraph:
    """`relations`: model/seed name → (unique id, relation); `models`: name → (unique id, config, compiled SQL)."""
    graph = TrainingGraph()
    if not config.training and not trained_models(config):
        return graph
    targets = {name: t for name, t in project_targets(config).items() if t.enabled}
    doc = config.document
    errors: list[CompileError] = []

    def where(*key_path: Any) -> Location:
        return Location(config.config_path, doc.line_of(key_path) if doc else None)

    uid_of = {name: f"train.{config.name}.{name}" for name in targets}
    by_model = trained_models(config)
    for model_name, target_name in by_model.items():
        if target_name not in targets:
            suggestion = did_you_mean(target_name, targets)
            errors.append(
                DependencyError(
                    f"llm.models.{model_name}.trained_from: no training target named {target_name!r}"
                    + (f"; {suggestion}" if suggestion else ""),
                    location=where("llm", "models", model_name, "trained_from"),
                    hint="name a target declared under `training:` (and not disabled)",
                )
            )
    reserved = {(r.schema.lower(), r.identifier.lower()): n for n, (_, r) in relations.items()}
    for table in RESERVED_TABLES:
        owner = reserved.get((config.schema.lower(), table))
        if owner is not None and targets:
            errors.append(
                CompileError(
                    f"model or seed {owner!r} builds {config.schema}.{table}, a table wfsql's training targets write",
                    location=where("training"),
                    hint="rename that model (or give it another schema or alias)",
                )
            )
    for name, target in targets.items():
        settings = target.settings
        if name in relations:
            errors.append(
                CompileError(
                    f"training target {name!r} has the same name as a model or seed",
                    location=where("training", name),
                    hint="selectors and `wfsql train` find nodes by name: rename the target",
                )
            )
            continue
        pairs = settings["pairs"]
        if pairs not in relations:
            suggestion = did_you_mean(pairs, relations)
            errors.append(
                DependencyError(
                    f"training.{name}.pairs: no model or seed named {pairs!r}"
                    + (f"; {suggestion}" if suggestion else ""),
                    location=where("training", name, "pairs"),
                    hint="name the model whose rows are (prompt, chosen, rejected), e.g. pairs: pairs",
                )
            )
            continue
        pairs_uid, relation = relations[pairs]
        parents = [pairs_uid]
        base = settings["base_model"]
        llm_models = (config.llm or {}).get("models") or {}
        base_spec: Any = base
        if base in by_model:
            if by_model[base] == name:
                errors.append(
                    DependencyError(
                        f"training.{name}.base_model: {base!r} is this target's own trained model",
                        location=where("training", name, "base_model"),
                        hint="start from 'default', another model, or another target's model",
                    )
                )
                continue
            if by_model[base] in uid_of:
                parents.append(uid_of[by_model[base]])
        if isinstance(llm_models, dict) and isinstance(llm_models.get(base), dict):
            base_spec = llm_models[base]
        graph.parents[uid_of[name]] = parents
        graph.nodes[uid_of[name]] = TrainNode(
            unique_id=uid_of[name],
            name=name,
            path=config.config_path.name,
            depends_on=tuple(parents),
            fingerprint=fingerprint("train", target.fingerprint_basis(), base_spec, str(relation)),
            tags=tuple(settings["tags"]),
            config=_json_safe(settings),
            description=settings.get("description") or "",
            pairs=pairs_uid,
            pairs_relation=relation,
            base_model=base,
            line=target.line,
        )
    if by_model:
        for uid, model_config, sql in models.values():
            named = set(_MODEL_ARGUMENT.findall(sql))
            llm_config = model_config.get("llm") or {}
            if isinstance(llm_config, dict):
                named |= {str(v) for v in llm_config.values() if isinstance(v, str)}
            needed = sorted({uid_of[by_model[n]] for n in named if n in by_model and by_model[n] in uid_of})
            if needed:
                graph.model_parents[uid] = needed
    if len(errors) == 1:
        raise errors[0]
    if errors:
        from wfsql.errors import CompileErrors

        raise CompileErrors(list(errors))
    return graph


def _json_safe(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if isinstance(v, str | int | float | bool | list | dict | None)}


__all__ = ["HINT", "TrainingGraph", "TrainingTarget", "build_training_graph", "trained_models"]
