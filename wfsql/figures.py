"""PNG figures of a built project: the DAG (models by level) and the feedback category distribution.

`wfsql docs-figures` writes them into a folder; docs/pipeline.md shows the template project's.
matplotlib is an optional dependency (`pip install 'wfsql[report]'`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wfsql.compiler import Manifest

_COLOURS = {"model": "#4C72B0", "seed": "#55A868", "source": "#DD8452", "test": "#8C8C8C"}


def dag_figure(manifest: Manifest, path: Path, *, include_tests: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = {uid for uid, n in manifest.nodes.items() if include_tests or n.resource_type != "test"}
    dag = manifest.dag.subgraph(keep)
    levels = dag.levels()
    position: dict[str, tuple[float, float]] = {}
    for x, level in enumerate(levels):
        for y, uid in enumerate(sorted(level)):
            position[uid] = (x, -(y - (len(level) - 1) / 2))
    tallest = max(len(level) for level in levels)
    width = max(8.0, 1.45 * len(levels))
    height = max(3.0, 0.75 * tallest + 1.2)
    figure, axes = plt.subplots(figsize=(width, height))
    for uid in dag.nodes:
        for parent in dag.parents(uid):
            (x0, y0), (x1, y1) = position[parent], position[uid]
            axes.annotate(
                "",
                xy=(x1 - 0.08, y1),
                xytext=(x0 + 0.08, y0),
                arrowprops={"arrowstyle": "->", "color": "#999999", "lw": 0.8},
            )
    for uid, (x, y) in position.items():
        node = manifest.nodes[uid]
        kind = getattr(node, "materialized", node.resource_type)
        axes.text(
            x,
            y,
            f"{node.name}\n{kind}",
            ha="center",
            va="center",
            fontsize=6.5,
            color="white",
            bbox={"boxstyle": "round,pad=0.3", "fc": _COLOURS.get(node.resource_type, "#666666"), "ec": "none"},
        )
    axes.set_xlim(-0.7, len(levels) - 0.3)
    axes.set_ylim(-(tallest - 1) / 2 - 0.8, (tallest - 1) / 2 + 0.8)
    axes.axis("off")
    axes.set_title(f"{manifest.config.name}: {len(dag)} nodes in {len(levels)} levels", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


def category_figure(rows: list[tuple[str, str, int]], path: Path, title: str) -> Path:
    """rows: (side, category, turns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(rows, key=lambda r: (r[0] != "SAT", -r[2]))
    figure, axes = plt.subplots(figsize=(7, 0.35 * max(len(ordered), 4) + 1))
    labels = [f"{side}: {category}" for side, category, _ in ordered]
    colours = ["#55A868" if side == "SAT" else "#C44E52" for side, _, _ in ordered]
    axes.barh(labels, [r[2] for r in ordered], color=colours)
    axes.invert_yaxis()
    axes.set_xlabel("user turns")
    axes.set_title(title, fontsize=10)
    for index, (_, _, turns) in enumerate(ordered):
        axes.text(turns, index, f" {turns}", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=130)
    plt.close(figure)
    return path


def project_figures(project: Any, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = project.compile()
    written = [dag_figure(manifest, folder / "dag.png")]
    node = manifest.by_name("feedback_category_counts", ("model",))
    if node is not None:
        with project.database(read_only=True) as adapter:
            if adapter.existing(node.relation) is not None:  # type: ignore[attr-defined]
                rows = adapter.cursor().execute(f"select side, category, turns from {node.relation}").fetchall()  # type: ignore[attr-defined]
                written.append(
                    category_figure(
                        rows,
                        folder / "feedback_categories.png",
                        "Feedback categories in the sample (feedback_category_counts)",
                    )
                )
    return written
