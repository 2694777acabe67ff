"""Conversation sources: log files declared in YAML, ingested into three tables before models run.

```yaml
sources:
  - name: logs
    tables:
      - name: conversations
        path: data/*.jsonl          # files, folders or globs; JSON, JSONL, Parquet, .gz/.zst
        format: sharegpt            # sharegpt | openai | wildchat | auto
```

gives `source('logs', 'conversations')` (one row per conversation), `source('logs',
'conversations_turns')` (the canonical turn table) and `source('logs', 'conversations_quarantine')`
(every record that could not be loaded, with file, line, byte offset and reason). The load is one
node of the DAG; it reruns only when the files or the declaration change.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wfsql.errors import WfsqlError
from wfsql.nodes import SourceNode, fingerprint

if TYPE_CHECKING:  # compile imports this module; only a run needs DuckDB
    from wfsql.adapter import DuckDBAdapter

CONVERSATION_FORMATS = ("sharegpt", "openai", "wildchat", "auto")
DERIVED = ("turns", "quarantine")


def is_conversation_format(fmt: object) -> bool:
    return isinstance(fmt, str) and fmt.lower() in CONVERSATION_FORMATS


def files_fingerprint(pattern: str) -> str:
    """Names, sizes and mtimes of the matched files: cheap, and changes when a file does."""
    matched = sorted(glob.glob(pattern, recursive=True)) if any(c in pattern for c in "*?[") else [pattern]
    stats = []
    for name in matched:
        path = Path(name)
        if path.is_dir():
            stats.extend(
                (str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()
            )
        elif path.exists():
            stat = path.stat()
            stats.append((name, stat.st_size, stat.st_mtime_ns))
    return fingerprint(stats)


@dataclass(frozen=True)
class LoadOutcome:
    message: str
    rows_affected: int
    quarantined: int


def load_conversation_source(
    adapter: DuckDBAdapter, node: SourceNode, *, schema: str, strict: bool = False
) -> LoadOutcome:
    from wfsql.conversations import ConversationFormatError, ingest
    from wfsql.state import record_build

    assert node.external_path is not None
    try:
        result = ingest(node.external_path, (node.format or "auto").lower(), strict=strict)
    except ConversationFormatError as exc:
        raise WfsqlError(
            f"source {node.source_name}.{node.name}: {exc}",
            node=f"source {node.source_name}.{node.name}",
            hint="fix or remove the record, or run without --strict to quarantine it",
        ) from None
    except FileNotFoundError as exc:
        raise WfsqlError(
            f"source {node.source_name}.{node.name}: {exc}",
            node=f"source {node.source_name}.{node.name}",
            hint=f"check `path:` in {node.path}",
        ) from None
    tables = {
        node.name: result.conversations,
        f"{node.name}_turns": result.turns,
        f"{node.name}_quarantine": result.quarantine,
    }
    adapter.ensure_schemas([schema])
    cursor = adapter.cursor()
    registered = []
    try:
        for name, table in tables.items():
            view = f"__wfsql_load_{name}"
            cursor.register(view, table)
            registered.append(view)
        with adapter.transaction() as transaction:
            for name in tables:
                target = f'"{schema}"."{name}"'
                transaction.execute(f"create or replace table {target} as select * from __wfsql_load_{name}")
            record_build(transaction, node, f"{schema}.{node.name}", "conversations")
    finally:
        for view in registered:
            cursor.unregister(view)
    stats = result.stats
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(stats.by_reason.items(), key=lambda kv: -kv[1])[:3])
    # The console appends the loaded count (" 58 rows"), so the message ends where that number reads well.
    message = (
        f"loaded {node.source_name}.{node.name} from {stats.files} file(s): read {stats.read:,} "
        f"({stats.turns:,} turns kept), quarantined {stats.quarantined:,}"
        + (f" ({reasons}) -> {schema}.{node.name}_quarantine" if stats.quarantined else "")
        + "; kept:"
    )
    return LoadOutcome(message, stats.loaded, stats.quarantined)


def resolve_pattern(root: Path, location: str) -> str:
    path = os.path.expanduser(location)
    return path if os.path.isabs(path) else str(root / path)
