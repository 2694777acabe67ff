"""Stage 1: find a project's files and read them. No rendering, no database."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from wfsql.config import ProjectConfig
from wfsql.errors import Location, YamlError
from wfsql.renderer import MacroFile
from wfsql.resources import bundled_macros_dir
from wfsql.yamlfile import YamlDocument, load_yaml

_DOC_BLOCK = re.compile(r"\{%-?\s*docs\s+(\w+)\s*-?%\}(.*?)\{%-?\s*enddocs\s*-?%\}", re.DOTALL)


@dataclass(frozen=True)
class SqlFile:
    """A model, test or macro file."""

    absolute: str
    rel: str  # relative to the project root, '/'-separated
    folders: tuple[str, ...]  # folders between the resource path and the file
    text: str
    name: str = ""  # the file name without its suffix: set once, as compile reads it many times

    def __post_init__(self) -> None:
        if not self.name:
            base = self.rel.rsplit("/", 1)[-1]
            object.__setattr__(self, "name", base.rsplit(".", 1)[0] if "." in base else base)

    @property
    def path(self) -> Path:
        return Path(self.absolute)


@dataclass(frozen=True)
class PropertyEntry:
    """One item of a properties YAML list (`models:`, `seeds:`, `sources:`), with where it was."""

    doc: YamlDocument
    key_path: tuple[Any, ...]
    data: dict[str, Any]

    @property
    def location(self) -> Location:
        return self.doc.location(self.key_path)


@dataclass
class ProjectFiles:
    models: list[SqlFile] = field(default_factory=list)
    seeds: list[SqlFile] = field(default_factory=list)  # text left empty: seeds are read by DuckDB
    singular_tests: list[SqlFile] = field(default_factory=list)
    macros: list[MacroFile] = field(default_factory=list)
    model_properties: list[PropertyEntry] = field(default_factory=list)
    seed_properties: list[PropertyEntry] = field(default_factory=list)
    sources: list[PropertyEntry] = field(default_factory=list)
    doc_blocks: dict[str, str] = field(default_factory=dict)


def _files(root: Path, folders: tuple[str, ...], suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """(resource folder, relative file path) pairs under each folder, sorted for a stable order.

    os.walk on strings: Path.rglob plus sorting Path objects cost more than compiling a small project.
    """
    found: list[tuple[Path, str]] = []
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        names: list[str] = []
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            prefix = os.path.relpath(directory, base)
            for name in files:
                if not name.startswith(".") and name.lower().endswith(suffixes):
                    names.append(name if prefix == "." else f"{prefix}{os.sep}{name}")
        found.extend((base, name) for name in sorted(names))
    return found


@lru_cache(maxsize=64)
def _base_prefix(root: Path, base: Path) -> tuple[str, str]:
    """(absolute base + separator, base relative to root + '/' or '') for one resource folder."""
    rel = os.path.relpath(base, root).replace(os.sep, "/")
    return os.path.join(base, ""), "" if rel == "." else rel + "/"


def _sql_file(root: Path, base: Path, name: str, *, read: bool = True) -> SqlFile:
    """Plain string paths on purpose: pathlib costs more than reading a small file."""
    absolute_base, rel_base = _base_prefix(root, base)
    absolute = absolute_base + name
    text = ""
    if read:
        with open(absolute, encoding="utf-8") as handle:
            text = handle.read()
    parts = name.split(os.sep)
    return SqlFile(absolute=absolute, rel=rel_base + "/".join(parts), folders=tuple(parts[:-1]), text=text)


def load_files(config: ProjectConfig) -> ProjectFiles:
    root = config.root
    files = ProjectFiles()
    files.models = [_sql_file(root, b, p) for b, p in _files(root, config.model_paths, (".sql", ".py"))]
    files.seeds = [_sql_file(root, b, p, read=False) for b, p in _files(root, config.seed_paths, (".csv", ".tsv"))]
    files.singular_tests = [_sql_file(root, b, p) for b, p in _files(root, config.test_paths, (".sql",))]
    bundled = bundled_macros_dir()
    files.macros = [
        MacroFile(path, path.read_text(encoding="utf-8"), bundled=True) for path in sorted(bundled.rglob("*.sql"))
    ]
    files.macros += [
        MacroFile(base / name, (base / name).read_text(encoding="utf-8"))
        for base, name in _files(root, config.macro_paths, (".sql",))
    ]
    yaml_folders = tuple(dict.fromkeys((*config.model_paths, *config.seed_paths, *config.macro_paths)))
    for base, name in _files(root, yaml_folders, (".yml", ".yaml")):
        _read_properties(base / name, files)
    doc_folders = tuple(dict.fromkeys((*config.model_paths, "docs")))
    for base, name in _files(root, doc_folders, (".md",)):
        for match in _DOC_BLOCK.finditer((base / name).read_text(encoding="utf-8")):
            files.doc_blocks[match.group(1)] = match.group(2).strip()
    return files


def _read_properties(path: Path, files: ProjectFiles) -> None:
    doc = load_yaml(path)
    if doc.data is None:
        return
    if not isinstance(doc.data, dict):
        raise YamlError("a properties file must be a mapping (models:, sources:, seeds:)", location=doc.location())
    targets = {"models": files.model_properties, "seeds": files.seed_properties, "sources": files.sources}
    for key, bucket in targets.items():
        items = doc.data.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise YamlError(f"`{key}:` must be a list of entries with `name:`", location=doc.location((key,)))
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise YamlError(
                    f"{key}[{index}] needs a `name:`",
                    location=doc.location((key, index)),
                    hint=f"each entry under `{key}:` starts with `- name: ...`",
                )
            bucket.append(PropertyEntry(doc, (key, index), item))
