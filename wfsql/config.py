"""Project configuration: `wfsql_project.yml` (native) or `dbt_project.yml` + `profiles.yml` (dbt).

Both flavours resolve to one `ProjectConfig`, so nothing downstream knows which file a project used.
Validation errors name the file, the key path and its line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from wfsql.errors import Location, ProjectConfigError, did_you_mean
from wfsql.yamlfile import YamlDocument, load_yaml

PROJECT_FILE = "wfsql_project.yml"
DBT_PROJECT_FILE = "dbt_project.yml"
DEFAULT_DATABASE = "target/wfsql.duckdb"

# Node configs a folder tree, a properties file or config() may set. Lists and dicts merge down the tree.
MODEL_CONFIG_KEYS = frozenset(
    {
        "materialized", "schema", "alias", "tags", "enabled", "unique_key", "incremental_strategy",
        "on_schema_change", "full_refresh", "meta", "docs", "pre_hook", "post_hook", "persist_docs",
        "description", "database", "grants", "contract", "column_types", "quote_columns", "delimiter",
        "severity", "warn_if", "error_if", "limit", "where", "store_failures", "fail_calc", "llm",
        "sql_header", "packages", "group", "access", "quoting", "strategy", "batch_size", "on_error",
    }
)
DICT_CONFIG_KEYS = frozenset({"meta", "docs", "persist_docs", "column_types", "grants", "contract", "llm",
                              "quoting"})
MATERIALIZATIONS = ("view", "table", "incremental", "ephemeral")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TargetSpec(_Strict):
    """One named target (e.g. dev/prod): where the database lives and how to run on it."""

    database: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    threads: int | None = Field(default=None, ge=1, le=256)


class PathsSpec(_Strict):
    models: list[str] = ["models"]
    seeds: list[str] = ["seeds"]
    tests: list[str] = ["tests"]
    macros: list[str] = ["macros"]

    @field_validator("*", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ProjectSpec(_Strict):
    """The schema of `wfsql_project.yml`."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    version: str | int | float | None = None
    database: str = DEFAULT_DATABASE
    schema_: str = Field(default="main", alias="schema")
    threads: int = Field(default=4, ge=1, le=256)
    paths: PathsSpec = PathsSpec()
    target_path: str = "target"
    vars: dict[str, Any] = {}
    models: dict[str, Any] = {}
    seeds: dict[str, Any] = {}
    tests: dict[str, Any] = {}
    targets: dict[str, TargetSpec] = {}
    default_target: str | None = None
    llm: dict[str, Any] = {}


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
    raise ProjectConfigError(
        f"no {PROJECT_FILE} (or {DBT_PROJECT_FILE}) in {project_dir}",
        hint="run wfsql from a project folder, pass --project-dir, or create one with `wfsql init DIR`",
    )


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
    if path.name == PROJECT_FILE:
        config = _native(root, doc, target)
    else:
        config = _dbt(root, doc, target)
    merged_vars = {**config.vars, **(cli_vars or {})}
    overrides: dict[str, Any] = {"vars": merged_vars}
    if threads is not None:
        overrides["threads"] = threads
    return _replace(config, **overrides)


def _replace(config: ProjectConfig, **changes: Any) -> ProjectConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _validation_error(doc: YamlDocument, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> ProjectConfigError:
    problems = []
    first_loc: Location | None = None
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if part != "__root__")
        loc = tuple("schema" if part == "schema_" else part for part in loc)
        key = ".".join(str(part) for part in (*prefix, *loc)) or "(top level)"
        line = doc.line_of((*prefix, *loc))
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys_for(loc)
            suggestion = did_you_mean(str(loc[-1]), allowed) if allowed else None
            message = "unknown key" + (f" ({suggestion})" if suggestion else "")
        problems.append(f"{key} (line {line}): {message}")
        if first_loc is None:
            first_loc = Location(doc.path, line)
    return ProjectConfigError(
        "; ".join(problems),
        location=first_loc,
        hint=f"see docs/configuration.md for the keys {doc.path.name} accepts",
    )


def _allowed_keys_for(loc: tuple[Any, ...]) -> list[str]:
    spec: type[BaseModel] = ProjectSpec
    for part in loc[:-1]:
        field_info = spec.model_fields.get(str(part))
        annotation = getattr(field_info, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            spec = annotation
        elif part in ("targets",) or (isinstance(part, str) and spec is TargetSpec):
            spec = TargetSpec
        else:
            continue
    return [info.alias or name for name, info in spec.model_fields.items()]


def _native(root: Path, doc: YamlDocument, target: str | None) -> ProjectConfig:
    if not isinstance(doc.data, dict):
        raise ProjectConfigError("the project file must be a mapping of keys", location=doc.location())
    try:
        spec = ProjectSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise _validation_error(doc, exc) from None
    target_name = target or spec.default_target or ("dev" if "dev" in spec.targets else "default")
    chosen = TargetSpec()
    if spec.targets or target:
        if target_name not in spec.targets:
            if target or spec.default_target:
                suggestion = did_you_mean(target_name, spec.targets)
                raise ProjectConfigError(
                    f"unknown target {target_name!r}" + (f"; {suggestion}" if suggestion else ""),
                    location=doc.location(("targets",)),
                    hint=f"declare it under `targets:` in {doc.path.name}; known: {sorted(spec.targets)}",
                )
        else:
            chosen = spec.targets[target_name]
    database = _resolve_database(root, chosen.database or spec.database)
    validate_config_tree(doc, ("models",), spec.models, spec.name, strict=True)
    validate_config_tree(doc, ("seeds",), spec.seeds, spec.name, strict=True)
    return ProjectConfig(
        root=root,
        name=spec.name,
        flavor="wfsql",
        config_path=doc.path,
        database=database,
        schema=chosen.schema_ or spec.schema_,
        threads=chosen.threads or spec.threads,
        target_name=target_name,
        model_paths=tuple(spec.paths.models),
        seed_paths=tuple(spec.paths.seeds),
        test_paths=tuple(spec.paths.tests),
        macro_paths=tuple(spec.paths.macros),
        target_dir=root / spec.target_path,
        vars=dict(spec.vars),
        model_tree=spec.models,
        seed_tree=spec.seeds,
        test_tree=spec.tests,
        llm=spec.llm,
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
