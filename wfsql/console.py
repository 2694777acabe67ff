"""All user-facing output goes through one Console; the same events feed run_results.json."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from wfsql.errors import WfsqlError
from wfsql.results import NodeResult, RunResults

_STYLE = {
    "success": ("green", "OK"),
    "reused": ("cyan", "REUSED"),
    "pass": ("green", "PASS"),
    "warn": ("yellow", "WARN"),
    "fail": ("red", "FAIL"),
    "error": ("red", "ERROR"),
    "skipped": ("yellow", "SKIP"),
}


def escape(text: str) -> str:
    """rich's markup escape, imported on use."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Console:
    """Thin, thread-safe wrapper over rich; `quiet` keeps only warnings, errors and the summary."""

    def __init__(self, *, quiet: bool = False, file: Any = None, width: int | None = None) -> None:
        self.quiet = quiet
        self._lock = threading.Lock()
        self._file = file
        self._width = width
        self._rich: Any = None

    @property
    def rich(self) -> Any:
        """The rich console, made on first output: a quiet command that prints nothing never imports rich."""
        if self._rich is None:
            from rich.console import Console as RichConsole

            self._rich = RichConsole(file=self._file or sys.stdout, width=self._width, highlight=False, soft_wrap=False)
        return self._rich

    def info(self, message: str) -> None:
        if not self.quiet:
            with self._lock:
                self.rich.print(message)

    def warn(self, message: str) -> None:
        with self._lock:
            self.rich.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)

    def error(self, error: BaseException) -> None:
        text = error.render() if isinstance(error, WfsqlError) else f"{type(error).__name__}: {error}"
        with self._lock:
            # soft-wrapped: the terminal folds long lines, so a path or command in a hint stays one piece to
            # copy (rich would break it at 80 columns when stderr is a pipe)
            self.rich.print(f"[red]{escape(text)}[/red]", soft_wrap=True)

    def node_result(self, index: int, total: int, result: NodeResult) -> None:
        if self.quiet and not result.failed and result.status != "warn":
            return
        colour, word = _STYLE[result.status]
        rows = f" {result.rows_affected:,} rows" if result.rows_affected is not None else ""
        if result.failures:
            rows = f" {result.failures:,} failing rows"
        width = len(str(total))
        line = (
            f"{index:>{width}} of {total} [{colour}]{word:<6}[/{colour}] {escape(result.message)}"
            f"[dim]{rows} in {result.execution_time:.2f}s[/dim]"
        )
        with self._lock:
            self.rich.print(line)
            sample = result.adapter_response.get("sample_rows")
            if sample:
                # min_width: a one-column sample must not wrap its title into a tall, narrow stack
                from rich.table import Table  # imported on use: a compile never draws a table

                table = Table(title="failing rows (sample)", title_justify="left", show_edge=False, min_width=24)
                for column in result.adapter_response.get("sample_columns", []):
                    table.add_column(str(column))
                for row in sample:
                    table.add_row(*[_cell(value) for value in row])
                self.rich.print(table)

    def summary(self, results: RunResults) -> None:
        counts = results.counts()
        parts = [f"{counts[s]} {_STYLE[s][1].lower()}" for s in _STYLE if counts.get(s)]
        colour = "green" if results.success else "red"
        with self._lock:
            self.rich.print(
                f"[{colour}]Finished {results.command}[/{colour}] of {len(results.results)} node(s) "
                f"in {results.elapsed:.2f}s: " + (", ".join(parts) or "nothing to do")
            )
            for result in results.results:
                if result.failed:
                    # test messages already start with the test's name; don't print it twice
                    message = result.message.removeprefix(f"{result.name}: ")
                    self.rich.print(f"[red]{escape(result.name)}[/red]: {escape(message)}")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        from rich.table import Table

        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(str(column), overflow="fold")
        for row in rows:
            table.add_row(*[_cell(value) for value in row])
        with self._lock:
            self.rich.print(table)

    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator[Any]:
        """A progress bar with rows/s and ETA; yields a callable advance(n)."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=self.rich,
            transient=True,
            disable=self.quiet,
        )
        task = progress.add_task(description, total=total, rate="")
        with progress:

            def advance(amount: int = 1) -> None:
                progress.advance(task, amount)
                elapsed = progress.tasks[0].elapsed or 0
                done = progress.tasks[0].completed
                if elapsed > 0:
                    progress.update(task, rate=f"{done / elapsed:,.1f} rows/s")

            yield advance


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]NULL[/dim]"
    text = str(value)
    return escape(text if len(text) <= 200 else text[:197] + "...")
