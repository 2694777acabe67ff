"""`wfsql export MODEL --format trl|wildfeedback|parquet`: preference pairs in the shapes trainers read.

The model must have `prompt` (a list of {role, content} messages ending with a user turn), `chosen`
and `rejected` (text) columns; other columns travel along in parquet only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import orjson

from wfsql.errors import WfsqlError

ExportFormat = Literal["trl", "wildfeedback", "parquet"]
REQUIRED = ("prompt", "chosen", "rejected")
_SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system"}


def to_trl(row: dict[str, Any]) -> dict[str, Any]:
    """TRL's conversational preference format: message lists for prompt, chosen and rejected."""
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }


def to_wildfeedback(row: dict[str, Any]) -> dict[str, Any]:
    """The released wildfeedback.json shape: ShareGPT turns ending with a human turn, chosen, rejected."""
    return {
        "conversations": [
            {"from": _SHAREGPT_ROLE.get(m["role"], m["role"]), "value": m["content"]} for m in row["prompt"]
        ],
        "chosen": {"from": "gpt", "value": row["chosen"]},
        "rejected": {"from": "gpt", "value": row["rejected"]},
    }


def check_pair(row: dict[str, Any], index: int) -> None:
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise WfsqlError(f"row {index}: prompt must be a non-empty list of {{role, content}} messages")
    if prompt[-1].get("role") != "user":
        raise WfsqlError(f"row {index}: the prompt must end with a user turn, not {prompt[-1].get('role')!r}")


def export_rows(rows: list[dict[str, Any]], columns: list[str], fmt: ExportFormat, output: Path) -> int:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise WfsqlError(
            f"cannot export: the model has no {', '.join(missing)} column(s) (it has {', '.join(columns)})",
            hint="export a pairs model: prompt (messages), chosen and rejected",
        )
    for index, row in enumerate(rows):
        check_pair(row, index)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(output.name + ".tmp")
    if fmt == "trl":
        temporary.write_bytes(b"".join(orjson.dumps(to_trl(r)) + b"\n" for r in rows))
    elif fmt == "wildfeedback":
        temporary.write_bytes(orjson.dumps([to_wildfeedback(r) for r in rows], option=orjson.OPT_INDENT_2))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), temporary)
    else:
        raise WfsqlError(f"unknown export format {fmt!r}", hint="use trl, wildfeedback or parquet")
    temporary.replace(output)
    return len(rows)
