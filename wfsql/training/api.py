"""How training targets take part in commands: `wfsql train`, and `build`/`run` without a selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wfsql.errors import SelectionError, did_you_mean
from wfsql.nodes import TrainNode


def training_targets(manifest: Any) -> dict[str, TrainNode]:
    return {n.name: n for n in manifest.nodes.values() if isinstance(n, TrainNode)}


def train_selection(manifest: Any, names: Sequence[str]) -> tuple[str, ...]:
    """The selectors of `wfsql train [NAME...]`: `+NAME` each (every target when none is named)."""
    targets = training_targets(manifest)
    if not targets:
        raise SelectionError(
            "this project declares no training target",
            hint="add one under `training:` in wfsql_project.yml (see docs/training.md)",
        )
    for name in names:
        if name not in targets:
            suggestion = did_you_mean(name, targets)
            raise SelectionError(
                f"no training target named {name!r}" + (f"; {suggestion}" if suggestion else ""),
                hint=f"declared targets: {', '.join(sorted(targets))}",
            )
    return tuple(f"+{name}" for name in (names or sorted(targets)))


def hold_out_training(manifest: Any, chosen: set[str], console: Any) -> set[str]:
    """Without --select, training targets and what needs their model are left out (they take minutes to
    hours, and the rest of the pipeline does not need them): `wfsql train` or a selection runs them."""
    held: set[str] = set()
    for uid, node in manifest.nodes.items():
        if isinstance(node, TrainNode):
            held |= {uid} | manifest.dag.descendants(uid)
    left_out = chosen & held
    if left_out:
        trains = sorted(manifest.nodes[u].name for u in left_out if isinstance(manifest.nodes[u], TrainNode))
        others = len(left_out) - len(trains)
        console.info(
            f"Leaving out training target(s) {', '.join(trains)}"
            + (f" and {others} node(s) that need a trained model" if others else "")
            + ": run them with `wfsql train` or --select"
        )
    return chosen - held
