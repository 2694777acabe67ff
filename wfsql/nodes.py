"""Typed, immutable nodes of a compiled project.

A model's materialisation is a tagged union (`ModelKind`), so code that handles models matches on the
kind instead of reading loose config strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Relation:
    """A schema-qualified name in the database."""

    schema: str
    identifier: str

    def __str__(self) -> str:
        return f"{quote_identifier(self.schema)}.{quote_identifier(self.identifier)}"

    @property
    def label(self) -> str:
        """Unquoted, for people."""
        return f"{self.schema}.{self.identifier}"


@dataclass(frozen=True)
class View:
    kind: Literal["view"] = "view"


@dataclass(frozen=True)
class Table:
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Ephemeral:
    kind: Literal["ephemeral"] = "ephemeral"


IncrementalStrategy = Literal["append", "merge", "delete+insert"]
OnSchemaChange = Literal["ignore", "fail", "append_new_columns", "sync_all_columns"]


@dataclass(frozen=True)
class Incremental:
    """Rows are added to an existing table; `unique_key` makes reruns replace instead of duplicate."""

    strategy: IncrementalStrategy = "append"
    unique_key: tuple[str, ...] = ()
    on_schema_change: OnSchemaChange = "ignore"
    kind: Literal["incremental"] = "incremental"


ModelKind = View | Table | Ephemeral | Incremental
ResourceType = Literal["model", "seed", "source", "test", "train"]


@dataclass(frozen=True)
class Node:
    """What every node shares: identity, where it came from, and its place in the graph."""

    unique_id: str
    name: str
    path: str  # relative to the project root
    depends_on: tuple[str, ...]
    fingerprint: str
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    description: str = ""

    @property
    def resource_type(self) -> ResourceType:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    description: str = ""
    data_type: str | None = None


@dataclass(frozen=True)
class ModelNode(Node):
    kind: ModelKind = field(default_factory=View)
    relation: Relation = field(default_factory=lambda: Relation("main", "unnamed"))
    raw_sql: str = ""
    compiled_sql: str = ""
    # The SQL to run when the model already exists (is_incremental() true); None when it does not differ.
    incremental_sql: str | None = None
    sources: tuple[str, ...] = ()
    columns: tuple[ColumnSpec, ...] = ()
    pre_hooks: tuple[str, ...] = ()
    post_hooks: tuple[str, ...] = ()
    llm_functions: tuple[str, ...] = ()  # LLM functions its SQL calls: built in collect/resolve passes
    language: Literal["sql", "python"] = "sql"
    python_links: tuple[tuple[str, str], ...] = ()  # ("ref:x" | "src:a.b", relation SQL) for Python models

    @property
    def resource_type(self) -> Literal["model"]:
        return "model"

    @property
    def materialized(self) -> str:
        return self.kind.kind


@dataclass(frozen=True)
class SeedNode(Node):
    relation: Relation = field(default_factory=lambda: Relation("main", "unnamed"))
    file_path: str = ""  # absolute
    column_types: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    delimiter: str = ","
    columns: tuple[ColumnSpec, ...] = ()

    @property
    def resource_type(self) -> Literal["seed"]:
        return "seed"


@dataclass(frozen=True)
class SourceNode(Node):
    """A relation wfsql does not build: a table already in DuckDB, or files read in place."""

    source_name: str = ""
    relation_sql: str = ""  # what source() renders to
    external_path: str | None = None
    format: str | None = None
    columns: tuple[ColumnSpec, ...] = ()
    loaded_by: str | None = None  # a loader node (e.g. a conversation source) that materialises it

    @property
    def resource_type(self) -> Literal["source"]:
        return "source"


@dataclass(frozen=True)
class TrainNode(Node):
    """A training target (`training:` in the project file): SFT and/or DPO on a pairs model's rows.

    `depends_on` holds the pairs model (and a training target whose model it starts from, if any);
    `config` holds the validated target settings (see wfsql/training/config.py).
    """

    pairs: str = ""  # unique id of the model (or seed) whose rows it trains on
    pairs_relation: Relation = field(default_factory=lambda: Relation("main", "unnamed"))
    base_model: str = "default"
    line: int | None = None  # line of its declaration in the project file

    @property
    def resource_type(self) -> Literal["train"]:
        return "train"

    @property
    def materialized(self) -> str:
        return "+".join(self.config.get("stages", ())) or "train"

    def manifest_extra(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "relation_name": str(self.pairs_relation), "base_model": self.base_model}


def relation_inputs(node: Node, nodes: Mapping[str, Node]) -> list[Node]:
    """The nodes whose relations `node`'s compiled SQL reads: its parents, with ephemeral models looked through
    (compile inlined them, so their own parents are what the SQL reads). Each at most once, in no set order."""
    inputs: dict[str, Node] = {}
    seen: set[str] = set()
    stack = list(node.depends_on)
    while stack:
        uid = stack.pop()
        parent = nodes.get(uid)
        if parent is None or uid in seen:
            continue
        seen.add(uid)
        if isinstance(parent, ModelNode) and isinstance(parent.kind, Ephemeral):
            stack.extend(parent.depends_on)
        else:
            inputs[uid] = parent
    return list(inputs.values())


def fingerprint(*parts: Any) -> str:
    """A content hash of JSON-able parts; the same inputs always give the same 16-byte hex digest."""
    # YAML gives non-string keys too (`1: x` in vars, `2024:` as a folder): hash them rather than crash.
    payload = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
