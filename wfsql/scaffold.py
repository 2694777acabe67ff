"""`wfsql init`: copy the template project into a new folder, named after it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from wfsql.errors import WfsqlError
from wfsql.resources import project_template_dir


def scaffold(directory: Path, *, sample: int = 0, force: bool = False) -> Path:
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not force:
        raise WfsqlError(
            f"{directory} exists and is not empty", hint="choose a new folder, or pass --force to write into it"
        )
    name = re.sub(r"\W", "_", directory.resolve().name).strip("_").lower() or "wfsql_project"
    if name[0].isdigit():
        name = f"p_{name}"
    template = project_template_dir()
    shutil.copytree(
        template, directory, dirs_exist_ok=True, ignore=shutil.ignore_patterns("target", "__pycache__", "*.duckdb*")
    )
    project_file = directory / "wfsql_project.yml"
    project_file.write_text(
        project_file.read_text(encoding="utf-8").replace("name: wildfeedback", f"name: {name}", 1), encoding="utf-8"
    )
    if sample:
        from wfsql.sample import write_sample

        write_sample(directory, sample)
    return directory
