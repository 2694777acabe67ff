"""`wfsql report`: one self-contained HTML page about a built project, to open in a browser.

Sections, each skipped with a note when its tables are not built:

1. pair counts per stage: rows at each step of the WildFeedback pipeline, from conversations to the
   cleaned pairs and the held-out evaluation set;
2. feedback category distribution (`feedback_category_counts`);
3. training curves (`training_steps`, written by training targets: loss, reward margins and accuracies per
   step) and the runs (`training_runs`);
4. evaluation: win rates with their bootstrap 95% intervals (`eval_win_rates`), what the checklist
   changes (`eval_checklist_effect`) and the verdicts per order (`eval_judgments`, position bias).

Reading (`collect`) and writing (`render_html`) are separate, so the page can be rendered from any
`ReportData`. Plots are PNGs embedded as base64 (matplotlib, the `report` extra); without matplotlib the
page has the tables only. Nothing on the page loads anything from the network.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

# (label, model, filter): a pipeline stage and where its rows are, in pipeline order.
STAGES: tuple[tuple[str, str, str | None], ...] = (
    ("conversations kept", "stg_conversations", None),
    ("user turns to classify", "feedback_candidates", None),
    ("classified turns", "feedback_turns", None),
    ("DSAT turns", "feedback_turns", "dsat"),
    ("turns with preferences", "user_preferences", None),
    ("pair prompts", "pair_prompts", None),
    ("expert pairs generated", "expert_pairs", None),
    ("on-policy pairs generated", "onpolicy_pairs", None),
    ("on-policy pairs the judge kept", "onpolicy_pairs", "judge_prefers_chosen"),
    ("pairs after cleaning: expert", "pairs", "variant = 'expert'"),
    ("pairs after cleaning: on-policy", "pairs", "variant = 'on_policy'"),
    ("held-out evaluation examples", "eval_set", None),
)


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def __bool__(self) -> bool:
        return bool(self.rows)

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass
class ReportData:
    project: str
    database: str
    generated_at: str = ""
    stages: list[tuple[str, str, int]] = field(default_factory=list)  # (label, relation, rows)
    categories: Table | None = None  # side, category, turns
    training_steps: Table | None = None
    training_runs: Table | None = None
    win_rates: Table | None = None
    checklist_effect: Table | None = None
    verdicts: Table | None = None  # mode, judge_order, verdict, judgments
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ reading


def collect(project: Any) -> ReportData:
    """Everything the page shows, read from the project's database (read-only)."""
    config = project.config
    data = ReportData(
        project=config.name,
        database=str(config.database),
        generated_at=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
    )
    if not Path(config.database).exists():
        data.notes.append(f"The database {config.database} does not exist yet: run `wfsql build` first.")
        return data
    manifest = project.compile(write_artifacts=False)
    with project.database(read_only=True) as adapter:
        cursor = adapter.cursor()

        def relation(name: str) -> str | None:
            node = manifest.by_name(name, ("model", "seed"))
            if node is None or getattr(node, "relation", None) is None:
                return None
            return str(node.relation) if adapter.existing(node.relation) is not None else None

        def table(sql: str) -> Table:
            result = cursor.execute(sql)
            columns = [d[0] for d in result.description]
            rows = [tuple(float(v) if isinstance(v, Decimal) else v for v in row) for row in result.fetchall()]
            return Table(columns, rows)

        for label, name, where in STAGES:
            found = relation(name)
            if found is None:
                continue
            sql = f"select count(*) from {found}" + (f" where {where}" if where else "")
            try:
                count = cursor.execute(sql).fetchall()[0][0]
            except Exception:  # a project whose model of that name has other columns
                continue
            data.stages.append((label, name, int(count)))

        found = relation("feedback_category_counts")
        if found:
            data.categories = table(f"select side, category, turns from {found} order by side desc, turns desc")

        steps = _find_table(cursor, "training_steps")
        if steps:
            data.training_steps = table(f"select * from {steps} order by run_id, stage, step")
        runs = _find_table(cursor, "training_runs")
        if runs:
            wanted = [
                "run_id",
                "target",
                "status",
                "stages",
                "n_pairs",
                "steps",
                "seconds",
                "final_loss",
                "final_reward_accuracy",
                "final_reward_margin",
                "finished_at",
            ]
            have = {r[0] for r in cursor.execute(f"describe {runs}").fetchall()}
            columns = ", ".join(c for c in wanted if c in have) or "*"
            data.training_runs = table(f"select {columns} from {runs} order by started_at nulls last")

        found = relation("eval_win_rates")
        if found:
            data.win_rates = table(f"select * from {found} order by candidate, baseline, mode")
        found = relation("eval_checklist_effect")
        if found:
            data.checklist_effect = table(f"select * from {found} order by candidate, baseline")
        found = relation("eval_judgments")
        if found:
            data.verdicts = table(
                f"select mode, judge_order, verdict, count(*) as judgments from {found} "
                "where verdict is not null group by all order by all"
            )
    return data


def _find_table(cursor: Any, name: str) -> str | None:
    rows = cursor.execute(
        "select table_schema, table_name from information_schema.tables where lower(table_name) = ? "
        "order by table_schema = 'main' desc, table_schema limit 1",
        [name],
    ).fetchall()
    if not rows:
        return None
    schema, table = rows[0]
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------ writing


def write_report(project: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(collect(project))
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto; max-width: 70rem;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
.meta, .note { color: #666; } .note { font-style: italic; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img.plot { max-width: 100%; display: block; margin: 0.6rem 0; }
"""


def render_html(data: ReportData) -> str:
    """The page for `data`: one HTML document with its plots inline."""
    plots = _Plots()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>wfsql report: {_e(data.project)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>wfsql report: {_e(data.project)}</h1>",
        f'<p class="meta">Database <code>{_e(data.database)}</code>, generated {_e(data.generated_at)}.</p>',
    ]
    parts += [f'<p class="note">{_e(note)}</p>' for note in data.notes]
    if not plots.available:
        parts.append("<p class=\"note\">Plots need matplotlib: pip install 'wfsql[report]'. Tables only.</p>")

    parts.append('<section id="stages"><h2>Pair counts per stage</h2>')
    if data.stages:
        parts.append(_table(["stage", "model", "rows"], [(label, name, rows) for label, name, rows in data.stages]))
        parts.append(plots.stages(data.stages))
    else:
        parts.append(_missing("the pipeline's models"))
    parts.append("</section>")

    parts.append('<section id="categories"><h2>Feedback category distribution</h2>')
    if data.categories:
        parts.append(plots.categories(data.categories))
        parts.append(_table(data.categories.columns, data.categories.rows))
    else:
        parts.append(_missing("feedback_category_counts"))
    parts.append("</section>")

    parts.append('<section id="training"><h2>Training curves</h2>')
    if data.training_steps:
        parts.append(plots.training(data.training_steps))
    else:
        parts.append(_missing("training_steps", "no training run has been recorded (`wfsql train`)"))
    if data.training_runs:
        parts.append(_table(data.training_runs.columns, data.training_runs.rows))
    parts.append("</section>")

    parts.append('<section id="evaluation"><h2>Checklist-guided evaluation</h2>')
    if data.win_rates:
        parts.append(
            "<p>Each candidate against the baseline on the held-out examples: the judge compares the two answers "
            "in both orders, with the example's checklist and without it. Win rate counts a tie as half; the "
            "interval is a percentile bootstrap over examples (95%). Position bias is the share of examples "
            "whose verdict changes with the order of the answers.</p>"
        )
        parts.append(plots.win_rates(data.win_rates))
        parts.append(_win_rate_table(data.win_rates))
    else:
        parts.append(_missing("eval_win_rates"))
    if data.checklist_effect:
        parts.append("<h3>What the checklist changes</h3>")
        parts.append(_table(data.checklist_effect.columns, data.checklist_effect.rows))
    if data.verdicts:
        parts.append("<h3>Verdicts by order</h3>")
        parts.append(
            "<p>A judge without position bias gives mirrored counts in the two orders (A++ in AB as often as "
            "B++ in BA for the same pairs).</p>"
        )
        parts.append(plots.verdicts(data.verdicts))
        parts.append(_table(data.verdicts.columns, data.verdicts.rows))
    parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _missing(what: str, why: str | None = None) -> str:
    return f'<p class="note">Not available: {_e(why or what + " is not built yet")}.</p>'


def _format(value: Any) -> tuple[str, bool]:
    if value is None:
        return "", False
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, bool):
        return str(value).lower(), False
    if isinstance(value, float):
        return ("" if math.isnan(value) else f"{value:.3g}" if abs(value) < 1e-3 and value else f"{value:,.3f}"), True
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)), False
    return str(value), False


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            text, numeric = _format(value)
            cells.append(f'<td class="num">{_e(text)}</td>' if numeric else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _win_rate_table(table: Table) -> str:
    rows = []
    for r in table.dicts():
        interval = (
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            if r.get("ci_low") is not None and r.get("ci_high") is not None
            else ""
        )
        rows.append(
            (
                r.get("candidate"),
                r.get("baseline"),
                r.get("mode"),
                r.get("examples"),
                r.get("win_rate"),
                interval,
                f"{r.get('wins')} / {r.get('ties')} / {r.get('losses')}",
                r.get("position_bias"),
                r.get("first_position_share"),
                r.get("consistent_win_rate"),
                r.get("mean_score"),
            )
        )
    columns = [
        "candidate",
        "baseline",
        "judged with",
        "examples",
        "win rate",
        "95% interval",
        "wins / ties / losses",
        "position bias",
        "first-position share",
        "consistent win rate",
        "mean score",
    ]
    return _table(columns, rows)


class _Plots:
    """matplotlib figures as <img> tags with base64 PNG data; empty strings without matplotlib."""

    def __init__(self) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            self.plt: Any = plt
        except ImportError:
            self.plt = None

    @property
    def available(self) -> bool:
        return self.plt is not None

    def _img(self, figure: Any, alt: str) -> str:
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=110)
        self.plt.close(figure)
        encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
        return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{encoded}">'

    def stages(self, stages: list[tuple[str, str, int]]) -> str:
        if not self.available:
            return ""
        figure, axes = self.plt.subplots(figsize=(8, 0.38 * max(len(stages), 3) + 1))
        labels = [label for label, _, _ in stages]
        counts = [rows for _, _, rows in stages]
        axes.barh(labels, counts, color="#4C72B0")
        axes.invert_yaxis()
        wide = max(counts, default=0) > 50 * max(1, min((c for c in counts if c > 0), default=1))
        if wide:  # conversations to pairs spans orders of magnitude
            axes.set_xscale("symlog", linthresh=10)
        for index, count in enumerate(counts):
            axes.text(count, index, f" {count:,}", va="center", fontsize=8)
        axes.set_xlabel("rows (symmetric log scale)" if wide else "rows")
        axes.set_title("Rows per pipeline stage", fontsize=10)
        return self._img(figure, "rows per pipeline stage")

    def categories(self, table: Table) -> str:
        if not self.available:
            return ""
        rows = sorted(table.rows, key=lambda r: (r[0] != "SAT", -int(r[2])))
        figure, axes = self.plt.subplots(figsize=(8, 0.32 * max(len(rows), 4) + 1))
        labels = [f"{side}: {category}" for side, category, _ in rows]
        axes.barh(labels, [r[2] for r in rows], color=["#55A868" if r[0] == "SAT" else "#C44E52" for r in rows])
        axes.invert_yaxis()
        for index, (_, _, turns) in enumerate(rows):
            axes.text(turns, index, f" {turns}", va="center", fontsize=8)
        axes.set_xlabel("user turns")
        axes.set_title("Feedback categories", fontsize=10)
        return self._img(figure, "feedback category distribution")

    def training(self, table: Table) -> str:
        if not self.available:
            return ""
        rows = table.dicts()
        metrics = [
            (name, title)
            for name, title in (
                ("loss", "loss"),
                ("rewards_margins", "reward margin (chosen - rejected)"),
                ("rewards_accuracies", "reward accuracy"),
                ("learning_rate", "learning rate"),
            )
            if any(r.get(name) is not None for r in rows)
        ]
        if not metrics:
            return '<p class="note">training_steps has no loss or reward columns to plot.</p>'
        series: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            label = " / ".join(str(r[k]) for k in ("target", "stage", "run_id") if r.get(k) is not None) or "run"
            series.setdefault(label, []).append(r)
        figure, axes_list = self.plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
        for axes, (name, title) in zip(axes_list[0], metrics, strict=True):
            for label, points in series.items():
                xy = [(p.get("step"), p.get(name)) for p in points if p.get(name) is not None]
                if xy:
                    axes.plot([x for x, _ in xy], [y for _, y in xy], marker="." if len(xy) < 40 else None, label=label)
            axes.set_xlabel("step")
            axes.set_title(title, fontsize=10)
        axes_list[0][0].legend(fontsize=7)
        return self._img(figure, "training curves")

    def win_rates(self, table: Table) -> str:
        if not self.available:
            return ""
        rows = [r for r in table.dicts() if r.get("win_rate") is not None]
        if not rows:
            return '<p class="note">No comparison was judged in both orders yet.</p>'
        figure, axes = self.plt.subplots(figsize=(8, 0.5 * len(rows) + 1.4))
        labels = [f"{r['candidate']} vs {r['baseline']} ({r['mode']})" for r in rows]
        values = [r["win_rate"] for r in rows]
        low = [r["win_rate"] - (r["ci_low"] if r.get("ci_low") is not None else r["win_rate"]) for r in rows]
        high = [(r["ci_high"] if r.get("ci_high") is not None else r["win_rate"]) - r["win_rate"] for r in rows]
        colours = ["#4C72B0" if r["mode"] == "checklist" else "#8C8C8C" for r in rows]
        positions = list(range(len(rows)))
        axes.barh(positions, values, color=colours, alpha=0.85)
        axes.errorbar(values, positions, xerr=[low, high], fmt="none", ecolor="black", capsize=4)
        axes.axvline(0.5, color="#C44E52", linestyle="--", linewidth=1)
        axes.set_yticks(positions, labels)
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.set_xlabel("win rate (tie = half) with 95% bootstrap interval")
        axes.set_title("Win rate against the baseline", fontsize=10)
        return self._img(figure, "win rates with 95% intervals")

    def verdicts(self, table: Table) -> str:
        if not self.available:
            return ""
        from wfsql.llm.judge import VERDICTS

        counts: dict[tuple[str, str], dict[str, int]] = {}
        for mode, order, verdict, n in table.rows:
            counts.setdefault((mode, order), {})[verdict] = int(n)
        groups = sorted(counts)
        figure, axes = self.plt.subplots(figsize=(8, 3.2))
        width = 0.8 / max(len(groups), 1)
        for g, key in enumerate(groups):
            xs = [v + (g - (len(groups) - 1) / 2) * width for v in range(len(VERDICTS))]
            axes.bar(xs, [counts[key].get(v, 0) for v in VERDICTS], width=width, label=f"{key[0]}, order {key[1]}")
        axes.set_xticks(range(len(VERDICTS)), VERDICTS)
        axes.set_ylabel("judgments")
        axes.legend(fontsize=7)
        axes.set_title("Judge verdicts by checklist mode and order", fontsize=10)
        return self._img(figure, "verdicts by order")
