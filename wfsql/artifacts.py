"""`target/manifest.json` and `target/compiled/`: what compile produced, for people and tools."""

from __future__ import annotations

import datetime
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from wfsql import __version__
from wfsql.compiler import Manifest
from wfsql.config import ProjectConfig
from wfsql.nodes import ModelNode, Node, SeedNode, SourceNode, fingerprint
from wfsql.results import _write_json


def compiled_path(manifest: Manifest, node: Node) -> Path:
    return manifest.config.root / compiled_relpath(manifest, node)


@lru_cache(maxsize=8)
def _target_relpath(target_dir: Path, root: Path) -> str:
    return os.path.relpath(target_dir, root).replace(os.sep, "/")


def compiled_relpath(manifest: Manifest, node: Node) -> str:
    """The compiled file's path relative to the project root; plain strings, as it runs per node."""
    if node.resource_type == "test":
        return model_compiled_relpath(manifest.config, f"tests/{node.name}.sql")
    return model_compiled_relpath(manifest.config, node.path)


def model_compiled_relpath(config: ProjectConfig, path: str) -> str:
    """Where the compiled SQL of a file at `path` (relative to the project root) goes."""
    return f"{_target_relpath(config.target_dir, config.root)}/compiled/{config.name}/{path}"


class CompiledWriter:
    """Writes files under target/compiled/ and remembers what it wrote, so writing again skips them.

    A cold compile hands it the models' SQL while sqlglot runs on the worker (`compile_project`'s
    `while_parsing`); the final `write_compiled` then only adds what is new (tests) or changed.
    """

    def __init__(self, config: ProjectConfig) -> None:
        self.config = config
        self.written: dict[str, str] = {}  # path relative to the root -> text written

    def write_models(self, items: list[tuple[str, str]]) -> None:
        """(model file path relative to the project, compiled SQL) pairs."""
        self.write([(model_compiled_relpath(self.config, path), sql) for path, sql in items])

    def write(self, items: list[tuple[str, str]]) -> None:
        """(compiled file path relative to the project root, SQL) pairs.

        Creating a thousand small files is syscall-bound; a few threads overlap those syscalls (they release
        the GIL), which roughly halves the wall time on two cores.
        """
        from concurrent.futures import ThreadPoolExecutor

        root = str(self.config.root)
        made: set[str] = set()
        jobs: list[tuple[str, str]] = []
        for relpath, sql in items:
            text = sql if sql.endswith("\n") else sql + "\n"
            if self.written.get(relpath) == text:
                continue
            path = os.path.join(root, relpath)
            parent = os.path.dirname(path)
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            jobs.append((path, text))
            self.written[relpath] = text
        if len(jobs) < 64:
            _write_share(jobs)
            return
        # One task per thread, not per file: a future per file costs as much as the write it wraps.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(_write_share, [jobs[i::4] for i in range(4)]))


def _write_share(jobs: list[tuple[str, str]]) -> None:
    for path, text in jobs:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


def write_compiled(manifest: Manifest, writer: CompiledWriter | None = None) -> None:
    """One file per model (and test) with its final SQL: what runs, ephemerals inlined."""
    writer = writer or CompiledWriter(manifest.config)
    writer.write(
        [
            (compiled_relpath(manifest, node), sql)
            for node in manifest.nodes.values()
            if (sql := getattr(node, "compiled_sql", None)) is not None
        ]
    )


def _node_json(manifest: Manifest, node: Node) -> dict[str, Any]:
    data: dict[str, Any] = {
        "unique_id": node.unique_id,
        "name": node.name,
        "resource_type": node.resource_type,
        "original_file_path": node.path,
        "depends_on": {"nodes": list(node.depends_on)},
        "fingerprint": node.fingerprint,
        "tags": list(node.tags),
        "config": node.config,
        "description": node.description,
    }
    if isinstance(node, ModelNode):
        data.update(
            materialized=node.materialized,
            relation_name=str(node.relation),
            raw_code=node.raw_sql,
            compiled_code=node.compiled_sql,
            compiled_path=compiled_relpath(manifest, node),
            checksum=node.fingerprint,
            columns={c.name: {"description": c.description, "data_type": c.data_type} for c in node.columns},
        )
        if node.incremental_sql is not None:
            data["compiled_incremental_code"] = node.incremental_sql
    elif isinstance(node, SeedNode):
        data.update(relation_name=str(node.relation), file=node.file_path)
    elif isinstance(node, SourceNode):
        data.update(source_name=node.source_name, relation_name=node.relation_sql, external=node.external_path)
    else:
        extra = getattr(node, "manifest_extra", None)
        if callable(extra):
            data.update(extra())
    return data


def write_manifest(manifest: Manifest) -> Path:
    target = manifest.config.target_dir
    target.mkdir(parents=True, exist_ok=True)
    dag = manifest.dag
    payload = {
        "metadata": {
            "wfsql_version": __version__,
            "generated_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "project_name": manifest.config.name,
            "flavor": manifest.config.flavor,
            "target": manifest.config.target_name,
        },
        "nodes": {uid: _node_json(manifest, node) for uid, node in manifest.nodes.items()},
        "parent_map": {uid: list(dag.parents(uid)) for uid in dag.nodes},
        "child_map": {uid: list(dag.children(uid)) for uid in dag.nodes},
        "warnings": manifest.warnings,
    }
    return _write_json(target / "manifest.json", payload)


def write_artifacts_if_changed(manifest: Manifest, writer: CompiledWriter | None = None) -> bool:
    """Write compiled SQL and manifest.json unless they already describe exactly this manifest.

    Rewriting a thousand unchanged files costs more than the whole warm compile, so a digest of
    every node's fingerprint is kept beside them.
    """
    target = manifest.config.target_dir
    # Fingerprints cover what runs, not what manifest.json also shows (descriptions, columns, the raw text
    # with its Jinja comments, the target), so those go into the digest too, or the file would go stale.
    shown = sorted(
        (uid, node.fingerprint, node.description, getattr(node, "raw_sql", ""), getattr(node, "columns", ()))
        for uid, node in manifest.nodes.items()
    )
    digest = fingerprint(shown, manifest.warnings, manifest.config.target_name)
    marker = target / ".artifacts_digest"
    try:
        if marker.read_text() == digest and (target / "manifest.json").exists():
            return False
    except OSError:
        pass
    write_compiled(manifest, writer)
    write_manifest(manifest)
    marker.write_text(digest)
    return True
