"""The rows a run trains on: read from the pairs relation, checked, put in a canonical order, checksummed.

The order is by each pair's content hash, not by the SQL's row order, so the same set of pairs always
gives the same checksum and the same training data, whatever plan DuckDB chose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from wfsql.errors import WfsqlError
from wfsql.nodes import TrainNode

REQUIRED = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Pair:
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    extra: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class Snapshot:
    pairs: list[Pair]
    checksum: str
    relation: str

    def __len__(self) -> int:
        return len(self.pairs)


def read_pairs(cursor: Any, node: TrainNode) -> Snapshot:
    """Every row of the target's pairs relation (filtered by `where:`), checked and in canonical order."""
    relation = str(node.pairs_relation)
    columns = [row[0] for row in cursor.execute(f"describe select * from {relation}").fetchall()]
    missing = [c for c in REQUIRED if c not in columns]
    pairs_name = node.pairs.split(".")[-1]
    if missing:
        raise WfsqlError(
            f"training target {node.name}: {node.pairs_relation.label} has no {', '.join(missing)} column(s) "
            f"(it has {', '.join(columns)})",
            node=f"train {node.name}",
            hint="point `pairs:` at a model with prompt (a list of {role, content} messages), chosen and rejected",
        )
    where = node.config.get("where")
    sql = f"select * from {relation}" + (f" where {where}" if where else "")
    table = cursor.sql(sql).to_arrow_table()
    rows = table.to_pylist()
    pairs = [_pair(row, index, node, pairs_name) for index, row in enumerate(rows)]
    if not pairs:
        raise WfsqlError(
            f"training target {node.name}: {node.pairs_relation.label} has no rows"
            + (f" where {where}" if where else "")
            + ": nothing to train on",
            node=f"train {node.name}",
            hint=f"build the pipeline first (`wfsql build --select +{pairs_name}`) and check why it found no pairs",
        )
    pairs.sort(key=lambda p: p.digest)
    checksum = hashlib.sha256("".join(p.digest for p in pairs).encode()).hexdigest()
    return Snapshot(pairs, checksum, node.pairs_relation.label)


def _pair(row: dict[str, Any], index: int, node: TrainNode, pairs_name: str) -> Pair:
    prompt = row["prompt"]
    if isinstance(prompt, str):  # a JSON column, or a seed
        try:
            prompt = orjson.loads(prompt)
        except orjson.JSONDecodeError:
            prompt = [{"role": "user", "content": prompt}]
    problem = None
    if not isinstance(prompt, list) or not prompt or not all(isinstance(m, dict) for m in prompt):
        problem = "prompt must be a non-empty list of {role, content} messages"
    elif prompt[-1].get("role") != "user":
        problem = f"the prompt must end with a user turn, not {prompt[-1].get('role')!r}"
    for column in ("chosen", "rejected"):
        if problem is None and (not isinstance(row[column], str) or not row[column].strip()):
            problem = f"{column} is empty or NULL"
    if problem is not None:
        raise WfsqlError(
            f"training target {node.name}: row {index} of {node.pairs_relation.label}: {problem}",
            node=f"train {node.name}",
            hint=f"fix {pairs_name} (or filter such rows with `where:` on the target)",
        )
    messages = [{"role": str(m.get("role")), "content": str(m.get("content") or "")} for m in prompt]
    core = {"prompt": messages, "chosen": row["chosen"], "rejected": row["rejected"]}
    digest = hashlib.sha256(orjson.dumps(core)).hexdigest()
    extra = {k: v for k, v in row.items() if k not in REQUIRED}
    return Pair(messages, row["chosen"], row["rejected"], extra, digest)


def write_jsonl(snapshot: Snapshot, path: Path) -> None:
    """The run folder's own copy of its data: one {prompt, chosen, rejected} object a line."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("wb") as handle:
        for pair in snapshot.pairs:
            handle.write(orjson.dumps({"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}))
            handle.write(b"\n")
    temporary.replace(path)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]
