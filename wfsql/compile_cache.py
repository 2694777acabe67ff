"""A content-hash cache of rendered templates and SQL analyses, kept in `target/`.

A warm compile of an unchanged project skips Jinja and sqlglot entirely. Entries are keyed by what
determines their output: the file's text plus a digest of the render environment (vars, target,
macros); env vars a template read are re-checked on every hit.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wfsql import __version__
from wfsql.config import ProjectConfig
from wfsql.nodes import fingerprint
from wfsql.renderer import MacroFile, RenderResult
from wfsql.sql_analysis import SqlAnalysis

CACHE_FILE = "compile_cache.pickle"
_PACKAGE_DIR = Path(__file__).resolve().parent


def _code_stamp() -> list[tuple[str, int, int]]:
    """Sizes and mtimes of wfsql's own modules: a changed wfsql invalidates what the old code compiled."""
    stamp = []
    for directory, _, names in os.walk(_PACKAGE_DIR):
        for name in names:
            if name.endswith(".py"):
                stat = os.stat(os.path.join(directory, name))
                stamp.append((name, stat.st_size, stat.st_mtime_ns))
    return sorted(stamp)


@dataclass
class CompileCache:
    path: Path | None
    environment: str
    renders: dict[str, RenderResult] = field(default_factory=dict)
    parses: dict[str, SqlAnalysis] = field(default_factory=dict)
    manifest: tuple[str, Any] | None = None  # (project digest, (nodes, dag, warnings))
    dirty: bool = False

    @classmethod
    def disabled(cls) -> CompileCache:
        return cls(path=None, environment="")

    @classmethod
    def open(cls, config: ProjectConfig, macros: Iterable[MacroFile]) -> CompileCache:
        environment = fingerprint(
            __version__,
            _code_stamp(),
            config.flavor,
            config.name,
            config.target_name,
            config.schema,
            config.database,
            config.threads,
            config.vars,
            [(str(m.path), m.text) for m in macros],
        )
        path = config.target_dir / CACHE_FILE
        cache = cls(path=path, environment=environment)
        try:
            with path.open("rb") as handle:
                stored = pickle.load(handle)
            if stored.get("environment") == environment:
                cache.renders = stored["renders"]
                cache.manifest = stored.get("manifest")
            cache.parses = stored.get("parses", {})
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, AttributeError, TypeError, ValueError):
            pass
        return cache

    @staticmethod
    def sql_key(sql: str) -> str:
        return hashlib.blake2b(sql.encode(), digest_size=16).hexdigest()

    def render_key(self, rel_path: str, text: str) -> str:
        return hashlib.blake2b(f"{self.environment}\0{rel_path}\0{text}".encode(), digest_size=16).hexdigest()

    def get_render(self, key: str) -> RenderResult | None:
        result = self.renders.get(key) if self.path else None
        if result is None:
            return None
        if any(os.environ.get(name) != value for name, value in result.env_vars.items()):
            return None
        return result

    def put_render(self, key: str, result: RenderResult) -> None:
        if self.path:
            self.renders[key] = result
            self.dirty = True

    def get_parse(self, key: str) -> SqlAnalysis | None:
        return self.parses.get(key) if self.path else None

    def put_parse(self, key: str, analysis: SqlAnalysis) -> None:
        if self.path:
            self.parses[key] = analysis
            self.dirty = True

    def get_manifest(self, digest: str) -> Any | None:
        if self.path and self.manifest is not None and self.manifest[0] == digest:
            return self.manifest[1]
        return None

    def put_manifest(self, digest: str, value: Any) -> None:
        if self.path:
            self.manifest = (digest, value)
            self.dirty = True

    def save(self) -> None:
        """Write atomically; entries no longer used are dropped only when the cache grows large."""
        if not self.path or not self.dirty:
            return
        if len(self.parses) > 50_000:
            self.parses = dict(list(self.parses.items())[-25_000:])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        payload: dict[str, Any] = {
            "environment": self.environment,
            "renders": self.renders,
            "parses": self.parses,
            "manifest": self.manifest,
        }
        with temporary.open("wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(self.path)
