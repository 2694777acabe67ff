"""Where the files wfsql ships live: bundled macros and the project template.

In a source checkout (and an editable install) they are the repository's top-level `macros/` and
`project_template/`; in a wheel, setuptools maps the same folders into the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _shipped(package: str, repo_folder: str) -> Path:
    local = _REPO_ROOT / repo_folder
    if local.is_dir():
        return local
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:  # pragma: no cover - broken install
        return local


def bundled_macros_dir() -> Path:
    return _shipped("wfsql.bundled_macros", "macros")


def project_template_dir() -> Path:
    return _shipped("wfsql.project_template", "project_template")
