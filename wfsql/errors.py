"""Errors users see.

Every error wfsql raises on bad input carries *where* (file, line, column, node) and *what to do*
(a hint), so the CLI can print one actionable message instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """A place in a user's file; line and column are 1-based."""

    path: Path | str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        text = str(self.path)
        if self.line is not None:
            text += f":{self.line}"
            if self.column is not None:
                text += f":{self.column}"
        return text


class WfsqlError(Exception):
    """Base class of every error that is the user's to fix (not a bug in wfsql)."""

    title = "Error"

    def __init__(
        self,
        message: str,
        *,
        location: Location | None = None,
        node: str | None = None,
        hint: str | None = None,
        snippet: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.node = node
        self.hint = hint
        self.snippet = snippet

    def render(self) -> str:
        """The full, multi-line message the console prints."""
        head = self.title
        if self.node:
            head += f" in {self.node}"
        if self.location:
            head += f" ({self.location})"
        lines = [f"{head}: {self.message}"]
        if self.snippet:
            lines.append(self.snippet)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class ProjectConfigError(WfsqlError):
    title = "Project configuration error"


class YamlError(WfsqlError):
    title = "YAML error"


class CompileError(WfsqlError):
    title = "Compilation error"


class JinjaRenderError(CompileError):
    title = "Jinja error"


class SqlSyntaxError(CompileError):
    title = "SQL syntax error"


class DependencyError(CompileError):
    title = "Dependency error"


class SelectionError(WfsqlError):
    title = "Selection error"


class DatabaseError(WfsqlError):
    title = "Database error"


class DatabaseLockedError(WfsqlError):
    title = "Database busy"


class CompileErrors(WfsqlError):
    """Several independent problems found in one compile: report them all at once."""

    title = "Compilation failed"

    def __init__(self, errors: list[WfsqlError]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} problem(s) found")

    def render(self) -> str:
        return "\n\n".join(error.render() for error in self.errors)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' suffix for an unknown name, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    if not matches:
        return None
    return "did you mean " + " or ".join(repr(m) for m in matches) + "?"


def source_snippet(text: str, line: int, column: int | None = None, *, context: int = 1) -> str:
    """The offending line (with a neighbour each side) and a caret under the column."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    out = []
    width = len(str(min(len(lines), line + context)))
    for number in range(max(1, line - context), min(len(lines), line + context) + 1):
        marker = ">" if number == line else " "
        out.append(f"  {marker} {number:>{width}} | {lines[number - 1]}")
        if number == line and column:
            out.append("    " + " " * width + " | " + " " * (column - 1) + "^")
    return "\n".join(out)
