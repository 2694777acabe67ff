"""Results of running nodes, and the `target/` artifacts built from them."""

from __future__ import annotations

import datetime
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from wfsql import __version__

Status = Literal["success", "reused", "error", "skipped", "pass", "warn", "fail"]


@dataclass
class NodeResult:
    unique_id: str
    name: str
    resource_type: str
    status: Status
    message: str = ""
    execution_time: float = 0.0
    rows_affected: int | None = None
    failures: int | None = None
    compiled_path: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    adapter_response: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("error", "fail")


@dataclass
class RunResults:
    command: str
    results: list[NodeResult] = field(default_factory=list)
    elapsed: float = 0.0
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return not any(r.failed for r in self.results)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts

    def write(self, target_dir: Path) -> Path:
        target_dir.mkdir(parents=True, exist_ok=True)
        payload = {
            "metadata": {
                "wfsql_version": __version__,
                "generated_at": _now(),
                "command": self.command,
            },
            "elapsed_time": self.elapsed,
            "args": self.args,
            "results": [asdict(r) for r in self.results],
        }
        return _write_json(target_dir / "run_results.json", payload)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _write_json(path: Path, payload: Any) -> Path:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2, default=str))
    os.replace(temporary, path)
    return path
