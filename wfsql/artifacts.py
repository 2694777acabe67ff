"""`target/manifest.json` and `target/compiled/`: what compile produced, for people and tools."""

from __future__ import annotations

import datetime
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from wfsql import __version__
from wfsql.compiler import Manifest
from wfsql.nodes import ModelNode, Node, SeedNode, SourceNode, fingerprint
from wfsql.results import _write_json


def compiled_path(manifest: Manifest, node: Node) -> Path:
    return manifest.config.root / compiled_relpath(manifest, node)


@lru_cache(maxsize=8)
def _target_relpath(target_dir: Path, root: Path) -> str:
    return os.path.relpath(target_dir, root).replace(os.sep, "/")


def compiled_relpath(manifest: Manifest, node: Node) -> str:
    """The compiled file's path relative to the project root; plain strings, as it runs per node."""
    config = manifest.config
    target = _target_relpath(config.target_dir, config.root)
    if node.resource_type == "test":
        return f"{target}/compiled/{config.name}/tests/{node.name}.sql"
    return f"{target}/compiled/{config.name}/{node.path}"


def write_compiled(manifest: Manifest) -> None:
    """One file per model with its final SQL (what runs, ephemerals inlined).

    Creating a thousand small files is syscall-bound; a few threads overlap those syscalls (they release
    the GIL), which roughly halves the wall time on two cores.
    """
    from concurrent.futures import ThreadPoolExecutor

    made: set[str] = set()
    jobs: list[tuple[str, str]] = []
    root = str(manifest.config.root)
    for node in manifest.nodes.values():
        sql = getattr(node, "compiled_sql", None)
        if sql is None:
            continue
        path = os.path.join(root, compiled_relpath(manifest, node))
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        jobs.append((path, sql if sql.endswith("\n") else sql + "\n"))

    def write(job: tuple[str, str]) -> None:
        with open(job[0], "w", encoding="utf-8") as handle:
            handle.write(job[1])

    if len(jobs) < 64:
        for job in jobs:
            write(job)
        return

    def write_share(share: list[tuple[str, str]]) -> None:
        for job in share:
            write(job)

    # One task per thread, not per file: a future per file costs as much as the write it wraps.
    shares = [jobs[i::4] for i in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write_share, shares))


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


def write_artifacts_if_changed(manifest: Manifest) -> bool:
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
    write_compiled(manifest)
    write_manifest(manifest)
    marker.write_text(digest)
    return True
