"""Warn about `--vars` keys that no project file reads: a misspelt key would otherwise compile silently with
the default value, and the run would quietly do something other than what was asked.

The check is textual (a file that calls `var('name')` or `var("name")`, in SQL, YAML, macros or Python models),
so it does not depend on which templates were rendered or served from the compile cache. A var read under a
computed name (`var(prefix ~ 'x')`) cannot be seen this way; the message says so much by naming what it looked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from wfsql.errors import did_you_mean

_SUFFIXES = (".sql", ".yml", ".yaml", ".py", ".jinja", ".j2")
_SKIPPED_FOLDERS = {"node_modules", "__pycache__"}  # at any depth; hidden folders are skipped too
_VAR_CALL = re.compile(r"""\bvar\(\s*(?:name\s*=\s*)?['"]([^'"]+)['"]""")


def read_var_names(folders: Iterable[Path], skip: Iterable[Path] = ()) -> set[str]:
    """Every name passed literally to `var(...)` in the project's text files under `folders`, leaving out the
    folders in `skip` (the target folder) and virtual environments (a folder holding `pyvenv.cfg`)."""
    names: set[str] = set()
    skipped = {Path(path).resolve() for path in skip}
    for folder in folders:
        for directory, subfolders, files in os.walk(folder):
            subfolders[:] = [
                s for s in subfolders
                if s not in _SKIPPED_FOLDERS and not s.startswith(".")
                and (Path(directory) / s).resolve() not in skipped
                and not (Path(directory) / s / "pyvenv.cfg").exists()
            ]
            for file in files:
                if file.endswith(_SUFFIXES):
                    try:
                        text = (Path(directory) / file).read_text(encoding="utf-8", errors="replace")
                    except OSError:
                        continue
                    names.update(_VAR_CALL.findall(text))
    return names


def unused_var_warnings(given: Iterable[str], read: set[str]) -> list[str]:
    """One warning per key of `given` (the --vars keys) that is not in `read`, with the closest read name."""
    warnings = []
    for name in sorted({str(key) for key in given} - read):  # YAML keys may be numbers or booleans
        suggestion = did_you_mean(name, sorted(read))
        warnings.append(
            f"--vars key {name!r} is not read by any file of the project (no var('{name}') call)"
            + (f"; {suggestion}" if suggestion else "; it has no effect")
        )
    return warnings
