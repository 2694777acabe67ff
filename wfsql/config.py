"""Project configuration: `wfsql_project.yml` (native) or `dbt_project.yml` + `profiles.yml` (dbt).

Both flavours resolve to one `ProjectConfig`, so nothing downstream knows which file a project used.
Validation errors name the file, the key path and its line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wfsql.errors import Location, ProjectConfigError, did_you_mean
from wfsql.yamlfile import YamlDocument, load_yaml

PROJECT_FILE = "wfsql_project.yml"
DBT_PROJECT_FILE = "dbt_project.yml"
DEFAULT_DATABASE = "target/wfsql.duckdb"

# Node configs a folder tree, a properties file or config() may set. Lists and dicts merge down the tree.
MODEL_CONFIG_KEYS = frozenset(
    {
        "materialized",
        "schema",
        "alias",
        "tags",
        "enabled",
        "unique_key",
        "incremental_strategy",
        "on_schema_change",
        "full_refresh",
        "meta",
        "docs",
        "pre_hook",
        "post_hook",
        "persist_docs",
        "description",
        "database",
        "grants",
        "contract",
        "column_types",
        "quote_columns",
        "delimiter",
        "severity",
        "warn_if",
        "error_if",
        "limit",
        "where",
        "store_failures",
        "fail_calc",
        "llm",
        "sql_header",
        "packages",
        "group",
        "access",
        "quoting",
        "strategy",
        "batch_size",
        "on_error",
    }
)
DICT_CONFIG_KEYS = frozenset({"meta", "docs", "persist_docs", "column_types", "grants", "contract", "llm", "quoting"})
MATERIALIZATIONS = ("view", "table", "incremental", "ephemeral")


@dataclass(frozen=True)
class Field:
    """One key of a YAML mapping: its type(s), default, and for mappings the schema of its keys."""

    types: tuple[type, ...]
    default: Any = None
    children: dict[str, Field] | None = None  # a fixed set of keys
    each: dict[str, Field] | None = None  # a mapping of free names, each with these keys
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    many: bool = False  # a string is accepted as a one-item list


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "a dictionary (mapping)",
    list: "a list",
    type(None): "nothing",
}

TARGET_SCHEMA: dict[str, Field] = {
    "database": Field((str,)),
    "schema": Field((str,)),
    "threads": Field((int,), minimum=1, maximum=256),
}
PATHS_SCHEMA: dict[str, Field] = {
    key: Field((list,), [key], many=True) for key in ("models", "seeds", "tests", "macros")
}
PROJECT_SCHEMA: dict[str, Field] = {
    "name": Field((str,), pattern=r"^[A-Za-z_][A-Za-z0-9_]*$"),
    "version": Field((str, int, float)),
    "database": Field((str,), DEFAULT_DATABASE),
    "schema": Field((str,), "main"),
    "threads": Field((int,), 4, minimum=1, maximum=256),
    "paths": Field((dict,), {}, children=PATHS_SCHEMA),
    "target_path": Field((str,), "target"),
    "vars": Field((dict,), {}),
    "models": Field((dict,), {}),
    "seeds": Field((dict,), {}),
    "tests": Field((dict,), {}),
    "targets": Field((dict,), {}, each=TARGET_SCHEMA),
    "default_target": Field((str,)),
    "llm": Field((dict,), {}),
    "training": Field((dict,), {}),  # training targets; validated by wfsql/training/config.py
}


def validate_mapping(
    data: dict[str, Any], schema: dict[str, Field], path: tuple[Any, ...], problems: list[tuple[tuple[Any, ...], str]]
) -> dict[str, Any]:
    """Check `data` against `schema`; collect (key path, message) problems; return values with defaults.

    A small, dependency-free validator: the project file has a dozen keys and its errors must name
    each key path and line, which is all this needs to do.
    """
    out: dict[str, Any] = {}
    for key, value in data.items():
        spec = schema.get(str(key))
        if spec is None:
            suggestion = did_you_mean(str(key), schema)
            problems.append(((*path, key), "unknown key" + (f" ({suggestion})" if suggestion else "")))
            continue
        out[str(key)] = _validate_value(value, spec, (*path, key), problems)
    for key, spec in schema.items():
        if key not in out:
            if spec.default is None and key == "name" and path == ():
                problems.append(((key,), "is required"))
            out[key] = (
                validate_mapping({}, spec.children, (*path, key), problems) if spec.children else _copy(spec.default)
            )
    return out


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def _validate_value(value: Any, spec: Field, path: tuple[Any, ...], problems: list[tuple[tuple[Any, ...], str]]) -> Any:
    if value is None:
        return validate_mapping({}, spec.children, path, problems) if spec.children else _copy(spec.default)
    if spec.many and isinstance(value, str):
        value = [value]
    if isinstance(value, bool) or not isinstance(value, spec.types):
        expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in spec.types)
        problems.append((path, f"expected {expected}, got {type(value).__name__} {value!r}"))
        return _copy(spec.default)
    if spec.many and not all(isinstance(v, str) for v in value):
        problems.append((path, "expected a list of folder names"))
    if spec.pattern and isinstance(value, str) and not re.match(spec.pattern, value):
        problems.append((path, f"{value!r} is not a valid identifier (letters, digits, _; not starting with a digit)"))
    if isinstance(value, int) and spec.minimum is not None and value < spec.minimum:
        problems.append((path, f"must be at least {spec.minimum}"))
    if isinstance(value, int) and spec.maximum is not None and value > spec.maximum:
        problems.append((path, f"must be at most {spec.maximum}"))
    if spec.children is not None:
        return validate_mapping(value, spec.children, path, problems)
    if spec.each is not None:
        result = {}
        for name, item in value.items():
            if not isinstance(item, dict):
                problems.append(((*path, name), f"expected a dictionary (mapping), got {type(item).__name__}"))
                continue
            result[str(name)] = validate_mapping(item, spec.each, (*path, name), problems)
        return result
    return value


@dataclass(frozen=True)
class ProjectConfig:
    """Everything wfsql needs to know about a project, whatever file it came from."""

    root: Path
    name: str
    flavor: Literal["wfsql", "dbt"]
    config_path: Path
    database: str  # absolute path, or ":memory:"
    schema: str
    threads: int
    target_name: str
    model_paths: tuple[str, ...]
    seed_paths: tuple[str, ...]
    test_paths: tuple[str, ...]
    macro_paths: tuple[str, ...]
    target_dir: Path
    vars: dict[str, Any] = field(default_factory=dict)
    model_tree: dict[str, Any] = field(default_factory=dict)
    seed_tree: dict[str, Any] = field(default_factory=dict)
    test_tree: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    document: YamlDocument | None = None

    @property
    def database_label(self) -> str:
        return self.database if self.database == ":memory:" else os.path.relpath(self.database, self.root)


def find_project_file(project_dir: Path) -> Path:
    """The project file of a folder: wfsql's own first, then dbt's."""
    for name in (PROJECT_FILE, DBT_PROJECT_FILE):
        candidate = project_dir / name
        if candidate.is_file():
            return candidate
    above = next(
        (parent for parent in project_dir.resolve().parents
         if (parent / PROJECT_FILE).is_file() or (parent / DBT_PROJECT_FILE).is_file()),
        None,
    )
    hint = (  # like dbt, a command runs in the project folder itself, so name it rather than guess
        f"this folder is inside the project at {above}: run wfsql there, or pass --project-dir {above}"
        if above is not None
        else "run wfsql from a project folder, pass --project-dir, or create one with `wfsql init DIR`"
    )
    raise ProjectConfigError(f"no {PROJECT_FILE} (or {DBT_PROJECT_FILE}) in {project_dir}", hint=hint)


def load_project(
    project_dir: Path | str = ".",
    *,
    target: str | None = None,
    cli_vars: dict[str, Any] | None = None,
    threads: int | None = None,
) -> ProjectConfig:
    """Read and validate the project file of `project_dir`."""
    root = Path(project_dir).resolve()
    path = find_project_file(root)
    doc = load_yaml(path)
    config = _native(root, doc, target) if path.name == PROJECT_FILE else _dbt(root, doc, target)
    merged_vars = {**config.vars, **(cli_vars or {})}
    overrides: dict[str, Any] = {"vars": merged_vars}
    if threads is not None:
        overrides["threads"] = threads
    return _replace(config, **overrides)


def _replace(config: ProjectConfig, **changes: Any) -> ProjectConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _config_error(doc: YamlDocument, problems: list[tuple[tuple[Any, ...], str]]) -> ProjectConfigError:
    lines = []
    for key_path, message in problems:
        key = ".".join(str(part) for part in key_path) or "(top level)"
        lines.append(f"{key} (line {doc.line_of(key_path)}): {message}")
    return ProjectConfigError(
        "; ".join(lines),
        location=Location(doc.path, doc.line_of(problems[0][0])),
        hint=f"see docs/configuration.md in wfsql's repository for the keys {doc.path.name} accepts",
    )


def _native(root: Path, doc: YamlDocument, target: str | None) -> ProjectConfig:
    if not isinstance(doc.data, dict):
        raise ProjectConfigError("the project file must be a mapping of keys", location=doc.location())
    problems: list[tuple[tuple[Any, ...], str]] = []
    spec = validate_mapping(doc.data, PROJECT_SCHEMA, (), problems)
    if problems:
        raise _config_error(doc, problems)
    targets: dict[str, dict[str, Any]] = spec["targets"]
    target_name = target or spec["default_target"] or ("dev" if "dev" in targets else "default")
    chosen: dict[str, Any] = {}
    if targets or target or spec["default_target"]:  # a default_target naming nothing is a typo, not a no-op
        if target_name not in targets:
            if target or spec["default_target"]:
                suggestion = did_you_mean(target_name, targets)
                raise ProjectConfigError(
                    f"unknown target {target_name!r}" + (f"; {suggestion}" if suggestion else ""),
                    location=doc.location(("targets",)),
                    hint=f"declare it under `targets:` in {doc.path.name}; known: {sorted(targets)}",
                )
        else:
            chosen = targets[target_name]
    database = _resolve_database(root, chosen.get("database") or spec["database"])
    validate_config_tree(doc, ("models",), spec["models"], spec["name"], strict=True)
    validate_config_tree(doc, ("seeds",), spec["seeds"], spec["name"], strict=True)
    paths = spec["paths"]
    return ProjectConfig(
        root=root,
        name=spec["name"],
        flavor="wfsql",
        config_path=doc.path,
        database=database,
        schema=chosen.get("schema") or spec["schema"],
        threads=chosen.get("threads") or spec["threads"],
        target_name=target_name,
        model_paths=tuple(paths["models"]),
        seed_paths=tuple(paths["seeds"]),
        test_paths=tuple(paths["tests"]),
        macro_paths=tuple(paths["macros"]),
        target_dir=root / spec["target_path"],
        vars=dict(spec["vars"]),
        model_tree=spec["models"],
        seed_tree=spec["seeds"],
        test_tree=spec["tests"],
        llm=spec["llm"],
        training=spec["training"],
        document=doc,
    )


def _resolve_database(base: Path, database: str) -> str:
    if database in (":memory:", "memory"):
        return ":memory:"
    path = Path(os.path.expanduser(os.path.expandvars(database)))
    return str(path if path.is_absolute() else (base / path).resolve())


def validate_config_tree(
    doc: YamlDocument, prefix: tuple[Any, ...], tree: Any, project_name: str, *, strict: bool
) -> None:
    """Check a nested `models:`/`seeds:` block: `+key` and scalar keys are configs, mappings are folders."""
    if not isinstance(tree, dict):
        raise ProjectConfigError(
            f"{'.'.join(map(str, prefix))} must be a mapping of folders and configs",
            location=doc.location(prefix),
        )
    for key, value in tree.items():
        key_path = (*prefix, key)
        is_config, name = classify_tree_key(str(key), value)
        if is_config:
            if strict and name not in MODEL_CONFIG_KEYS:
                suggestion = did_you_mean(name, MODEL_CONFIG_KEYS)
                raise ProjectConfigError(
                    f"unknown config {'.'.join(map(str, key_path))!r}" + (f"; {suggestion}" if suggestion else ""),
                    location=doc.location(key_path),
                    hint="folder defaults take configs such as +materialized, +tags, +schema",
                )
            if name == "materialized" and value not in MATERIALIZATIONS and strict:
                raise ProjectConfigError(
                    f"{'.'.join(map(str, key_path))}: unknown materialization {value!r}",
                    location=doc.location(key_path),
                    hint=f"use one of {', '.join(MATERIALIZATIONS)}",
                )
        else:
            if not isinstance(key, str):  # YAML reads 2024, on/off, yes/no as numbers and booleans
                raise ProjectConfigError(
                    f"{'.'.join(map(str, key_path))}: a folder name must be text, but YAML read it as "
                    f"{type(key).__name__} {key!r}, which matches no folder",
                    location=doc.location(key_path),
                    hint="quote the folder name, e.g. '2024': or 'off':",
                )
            validate_config_tree(doc, key_path, value or {}, project_name, strict=strict)


def classify_tree_key(key: str, value: Any) -> tuple[bool, str]:
    """(is_config, config_name) for a key in a folder config tree, the way dbt reads it."""
    if key.startswith("+"):
        return True, key[1:].replace("-", "_")
    name = key.replace("-", "_")
    if not isinstance(value, dict) or name in DICT_CONFIG_KEYS:
        return True, name
    return False, key


def folder_config(
    tree: dict[str, Any], project_name: str, folders: tuple[str, ...], file_name: str | None = None
) -> dict[str, Any]:
    """Merge the configs that apply to a file in `folders` (relative to its resource path).

    As in dbt, the innermost level may also name the file itself (`my_model: {+enabled: false}`).
    """
    merged: dict[str, Any] = {}
    level: dict[str, Any] = tree
    if isinstance(tree.get(project_name), dict):  # dbt nests the tree under the project's name
        merge_configs(merged, _level_configs(tree))
        level = tree[project_name]
    merge_configs(merged, _level_configs(level))
    for folder in folders:
        child = level.get(folder)
        if not isinstance(child, dict):
            return merged
        level = child
        merge_configs(merged, _level_configs(level))
    if file_name is not None and isinstance(level.get(file_name), dict):
        merge_configs(merged, _level_configs(level[file_name]))
    return merged


def _level_configs(level: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in level.items():
        is_config, name = classify_tree_key(str(key), value)
        if is_config:
            out[name] = value
    return out


def merge_configs(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Later configs win; tags accumulate and dicts (meta, llm, ...) merge, as in dbt."""
    for key, value in update.items():
        key = key.replace("-", "_")
        if key == "tags":
            tags = [value] if isinstance(value, str) else list(value or [])
            base["tags"] = list(dict.fromkeys([*base.get("tags", []), *tags]))
        elif key in DICT_CONFIG_KEYS and isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        elif key in ("pre_hook", "post_hook"):
            hooks = [value] if isinstance(value, str) else list(value or [])
            base[key] = [*base.get(key, []), *hooks]
        else:
            base[key] = value
    return base


# --------------------------------------------------------------------------------------------- dbt


def _dbt(root: Path, doc: YamlDocument, target: str | None) -> ProjectConfig:
    data = doc.data if isinstance(doc.data, dict) else None
    if data is None or "name" not in data:
        raise ProjectConfigError("dbt_project.yml needs at least a `name`", location=doc.location())
    name = str(data["name"])

    def paths(key: str, default: str) -> tuple[str, ...]:
        value = data.get(key, [default])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ProjectConfigError(f"{key} must be a list of folders", location=doc.location((key,)))
        return tuple(value)

    for tree_key in ("models", "seeds", "tests", "data_tests"):
        if tree_key in data and data[tree_key] is not None:
            validate_config_tree(doc, (tree_key,), data[tree_key], name, strict=False)

    profile = _dbt_profile(root, str(data.get("profile", name)), target)
    raw_vars = data.get("vars") or {}
    flat_vars = {k: v for k, v in raw_vars.items() if not (k == name and isinstance(v, dict))}
    if isinstance(raw_vars.get(name), dict):
        flat_vars.update(raw_vars[name])
    return ProjectConfig(
        root=root,
        name=name,
        flavor="dbt",
        config_path=doc.path,
        database=profile.database,
        schema=profile.schema,
        threads=profile.threads,
        target_name=profile.target_name,
        model_paths=paths("model-paths", "models"),
        seed_paths=paths("seed-paths", "seeds"),
        test_paths=paths("test-paths", "tests"),
        macro_paths=paths("macro-paths", "macros"),
        target_dir=root / str(data.get("target-path", "target")),
        vars=flat_vars,
        model_tree=data.get("models") or {},
        seed_tree=data.get("seeds") or {},
        test_tree=data.get("data_tests") or data.get("tests") or {},
        llm=data.get("llm") or {},
        document=doc,
    )


@dataclass(frozen=True)
class _Profile:
    database: str
    schema: str
    threads: int
    target_name: str


def _dbt_profile(root: Path, profile_name: str, target: str | None) -> _Profile:
    """Read a DuckDB output of profiles.yml (project folder, DBT_PROFILES_DIR, ~/.dbt); default if none."""
    candidates = [root / "profiles.yml"]
    if os.environ.get("DBT_PROFILES_DIR"):
        candidates.insert(0, Path(os.environ["DBT_PROFILES_DIR"]) / "profiles.yml")
    candidates.append(Path.home() / ".dbt" / "profiles.yml")
    for path in candidates:
        if not path.is_file():
            continue
        doc = load_yaml(path)
        profiles = doc.data or {}
        if profile_name not in profiles:
            continue
        profile = profiles[profile_name] or {}
        target_name = target or profile.get("target", "dev")
        outputs = profile.get("outputs") or {}
        if target_name not in outputs:
            suggestion = did_you_mean(target_name, outputs)
            raise ProjectConfigError(
                f"profile {profile_name!r} has no target {target_name!r}" + (f"; {suggestion}" if suggestion else ""),
                location=doc.location((profile_name, "outputs")),
            )
        output = outputs[target_name] or {}
        if output.get("type", "duckdb") != "duckdb":
            raise ProjectConfigError(
                f"target {target_name!r} is of type {output.get('type')!r}; wfsql runs on DuckDB only",
                location=doc.location((profile_name, "outputs", target_name, "type")),
                hint="add a target with `type: duckdb` and choose it with --target",
            )
        database = str(output.get("path", ":memory:"))
        return _Profile(
            database=_resolve_database(root, database),
            schema=str(output.get("schema", "main")),
            threads=int(output.get("threads", 1)),
            target_name=target_name,
        )
    return _Profile(_resolve_database(root, DEFAULT_DATABASE), "main", 4, target or "dev")
