"""`wfsql report`: the HTML page from a built project (every section, and each one missing), and that it
renders in headless Chromium with its plots (skipped, with the reason, where Chromium is not installed)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from conftest import write_files
from typer.testing import CliRunner

from wfsql.cli import app
from wfsql.report import ReportData, Table, render_html

pytest.importorskip("matplotlib")

WIN_RATE_COLUMNS = (
    "candidate, baseline, mode, examples, missing, wins, ties, losses, win_rate, ci_low, ci_high, position_bias, "
    "first_position_share, consistent_win_rate, mean_score, resamples, seed"
)

PROJECT = {
    "wfsql_project.yml": "name: reported\n",
    "models/feedback_category_counts.sql": """
        {{ config(materialized='table') }}
        select * from (values ('SAT', 'gratitude', 12), ('DSAT', 'revision', 5), ('DSAT', 'style', 2))
            as t(side, category, turns)
    """,
    "models/pair_prompts.sql": "{{ config(materialized='table') }}\nselect range as id from range(9)",
    "models/pairs.sql": """
        {{ config(materialized='table') }}
        select * from (values (1, 'expert'), (2, 'expert'), (3, 'on_policy')) as t(id, variant)
    """,
    "models/eval_win_rates.sql": f"""
        {{{{ config(materialized='table') }}}}
        select * from (values
            ('trained <b>', 'default', 'checklist', 40, 0, 50, 10, 20, 0.625, 0.55, 0.70, 0.3, 0.6, 0.6, 0.4, 1000, 0),
            ('trained <b>', 'default', 'none', 40, 0, 44, 12, 24, 0.5750, 0.49, 0.66, 0.45, 0.7, 0.55, 0.2, 1000, 0)
        ) as t({WIN_RATE_COLUMNS})
    """,
    "models/eval_judgments.sql": """
        {{ config(materialized='table') }}
        select * from (values ('checklist', 'AB', 'A++'), ('checklist', 'BA', 'A++'), ('none', 'AB', 'B+'))
            as t(mode, judge_order, verdict)
    """,
}


def _build(root: Path, *, training: bool = True) -> None:
    from wfsql.api import Project, RunOptions
    from wfsql.console import Console

    assert Project.load(root, console=Console(quiet=True)).run(RunOptions()).success
    if training:
        with duckdb.connect(str(root / "target" / "wfsql.duckdb")) as con:
            con.execute(
                "create table training_steps as select 'r1' as run_id, 'train_dpo' as target, stage, step, "
                "1.0 / (step + 1) as loss, step * 0.01 as rewards_margins, "
                "least(1.0, step * 0.05) as rewards_accuracies "
                "from (values ('sft'), ('dpo')) as s(stage), range(1, 30) as r(step)"
            )


def _report(root: Path, out: Path | None = None) -> tuple[str, Path]:
    args = ["report", "--project-dir", str(root)] + (["--out", str(out)] if out else [])
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    path = out or root / "target" / "report.html"
    assert path.is_file() and str(path.name) in result.output
    return path.read_text(encoding="utf-8"), path


def test_report_has_every_section_with_tables_and_plots(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_files(root, PROJECT)
    _build(root)
    page, _ = _report(root)
    for section in ("stages", "categories", "training", "evaluation"):
        assert f'<section id="{section}">' in page
    assert "Not available" not in page
    assert len(re.findall(r'<img class="plot" alt="[^"]*" src="data:image/png;base64,', page)) == 5
    assert "pair prompts" in page and "pairs after cleaning: on-policy" in page
    assert "[0.550, 0.700]" in page and "trained &lt;b&gt;" in page and "<b>" not in page  # escaped
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page


def test_report_skips_what_is_not_built(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_files(root, {"wfsql_project.yml": "name: bare\n", "models/x.sql": "select 1 as x"})
    page, _ = _report(root, tmp_path / "out" / "bare.html")  # no database yet
    assert "does not exist yet" in page
    _build(root, training=False)
    page, _ = _report(root, tmp_path / "out" / "bare.html")
    assert page.count("Not available") == 4 and "<img" not in page


def test_render_html_from_data_without_database() -> None:
    data = ReportData(
        project="p",
        database="db",
        stages=[("pairs", "pairs", 3)],
        win_rates=Table(
            ["candidate", "baseline", "mode", "win_rate", "ci_low", "ci_high"], [("a", "b", "none", None, None, None)]
        ),
    )
    page = render_html(data)
    assert "No comparison was judged" in page and page.startswith("<!DOCTYPE html>")


# ------------------------------------------------------------------------------------------ in Chromium


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium is not installed (apt-get install -y chromium; `make test` installs it)")


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--mute-audio",
        f"--user-data-dir={profile}",
        *args,
    ]
    environment = {**os.environ, "HOME": str(profile)}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment)


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    root = tmp_path / "p"
    write_files(root, PROJECT)
    _build(root)
    page, path = _report(root)
    # a copy with a probe that counts the images the browser decoded
    probe = path.with_name("probe.html")
    probe.write_text(
        page.replace(
            "</body>",
            "<script>window.addEventListener('load', () => document.body.setAttribute('data-decoded', "
            "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length));</script></body>",
        ),
        encoding="utf-8",
    )
    dom = _run_chromium(binary, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-decoded="5"' in dom.stdout, dom.stdout[:500] + dom.stderr[-1000:]
    for heading in ("Pair counts per stage", "Feedback category distribution", "Training curves", "Win rate"):
        assert heading in dom.stdout
    # and a screenshot of the page itself shows the plots' colours, not a blank page
    shot = tmp_path / "report.png"
    done = _run_chromium(
        binary,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,4000",
        "--hide-scrollbars",
        path.as_uri(),
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))[:, :, :3]
    blue = (
        (abs(pixels[:, :, 0] - 0x4C / 255) < 0.04)
        & (abs(pixels[:, :, 1] - 0x72 / 255) < 0.04)
        & (abs(pixels[:, :, 2] - 0xB0 / 255) < 0.04)
    )
    assert blue.sum() > 2000  # the bars of the stage and win-rate plots
