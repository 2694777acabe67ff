"""The DuckDB side of training: `training_runs`, `training_steps` and `training_data`, in the target schema.

- `training_runs`: one row per run (config, base model, data checksum, status, timings, final metrics);
- `training_steps`: one row per logged optimizer step of each stage (loss, learning rate, reward margins
  and accuracies for DPO, token accuracy for SFT, tokens/s, and every metric TRL logged as JSON);
- `training_data`: the exact pairs each data checksum stands for, stored once per checksum.

The run folder holds the same facts as files (`spec.json`, `data.jsonl`, `steps.jsonl`, `result.json`),
so a run trained elsewhere (under `accelerate launch`) is mirrored into the tables from its folder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson

from wfsql.nodes import quote_identifier
from wfsql.training.data import Snapshot

STEP_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR",
    "target": "VARCHAR",
    "stage": "VARCHAR",
    "step": "INTEGER",
    "epoch": "DOUBLE",
    "loss": "DOUBLE",
    "learning_rate": "DOUBLE",
    "grad_norm": "DOUBLE",
    "rewards_chosen": "DOUBLE",
    "rewards_rejected": "DOUBLE",
    "rewards_margins": "DOUBLE",
    "rewards_accuracies": "DOUBLE",
    "logps_chosen": "DOUBLE",
    "logps_rejected": "DOUBLE",
    "mean_token_accuracy": "DOUBLE",
    "entropy": "DOUBLE",
    "num_tokens": "BIGINT",
    "tokens_per_s": "DOUBLE",
    "elapsed_s": "DOUBLE",
    "logged_at": "TIMESTAMPTZ",
    "metrics": "JSON",
}
RUN_COLUMNS: dict[str, str] = {
    "run_id": "VARCHAR PRIMARY KEY",
    "target": "VARCHAR",
    "status": "VARCHAR",  # running | success | failed
    "run_key": "VARCHAR",  # target fingerprint + data checksum + base weights + overrides: equal keys, equal runs
    "fingerprint": "VARCHAR",
    "config": "JSON",
    "base_model": "VARCHAR",
    "base_model_path": "VARCHAR",
    "base_model_id": "VARCHAR",
    "pairs_relation": "VARCHAR",
    "data_checksum": "VARCHAR",
    "n_pairs": "INTEGER",
    "stages": "VARCHAR[]",
    "lora": "BOOLEAN",
    "device": "VARCHAR",
    "precision": "VARCHAR",
    "max_length": "INTEGER",
    "max_prompt_length": "INTEGER",
    "truncated_prompts": "INTEGER",
    "output_dir": "VARCHAR",
    "model_dir": "VARCHAR",
    "attempts": "INTEGER",
    "started_at": "TIMESTAMPTZ",
    "finished_at": "TIMESTAMPTZ",
    "seconds": "DOUBLE",
    "steps": "INTEGER",
    "train_tokens": "BIGINT",
    "tokens_per_s": "DOUBLE",
    "peak_memory_gb": "DOUBLE",
    "final_loss": "DOUBLE",
    "final_reward_accuracy": "DOUBLE",
    "final_reward_margin": "DOUBLE",
    "summary": "JSON",
    "versions": "JSON",
    "error": "VARCHAR",
}
DATA_COLUMNS: dict[str, str] = {
    "data_checksum": "VARCHAR",
    "row_index": "INTEGER",
    "pair_hash": "VARCHAR",
    "prompt": "STRUCT(role VARCHAR, content VARCHAR)[]",
    "chosen": "VARCHAR",
    "rejected": "VARCHAR",
    "extra": "JSON",
}


class TrainingStore:
    """The three tables in one schema, written through one cursor (the training thread's own)."""

    def __init__(self, cursor: Any, schema: str) -> None:
        self.cursor = cursor
        self.schema = schema

    def table(self, name: str) -> str:
        return f"{quote_identifier(self.schema)}.{quote_identifier(name)}"

    def ensure(self) -> None:
        self.cursor.execute(f"create schema if not exists {quote_identifier(self.schema)}")
        for name, columns in (
            ("training_runs", RUN_COLUMNS),
            ("training_steps", STEP_COLUMNS),
            ("training_data", DATA_COLUMNS),
        ):
            body = ", ".join(f"{quote_identifier(c)} {t}" for c, t in columns.items())
            self.cursor.execute(f"create table if not exists {self.table(name)} ({body})")

    # ------------------------------------------------------------------------------------ data

    def save_snapshot(self, snapshot: Snapshot) -> bool:
        """Store the pairs under their checksum unless they are there already; True when written now."""
        table = self.table("training_data")
        present = self.cursor.execute(
            f"select count(*) from {table} where data_checksum = ?", [snapshot.checksum]
        ).fetchall()[0][0]
        if present == len(snapshot):
            return False
        import pyarrow as pa

        rows = [
            {
                "data_checksum": snapshot.checksum,
                "row_index": index,
                "pair_hash": pair.digest,
                "prompt": pair.prompt,
                "chosen": pair.chosen,
                "rejected": pair.rejected,
                "extra": orjson.dumps(pair.extra, default=str, option=orjson.OPT_NON_STR_KEYS).decode(),
            }
            for index, pair in enumerate(snapshot.pairs)
        ]
        arrow = pa.Table.from_pylist(rows)
        view = "__wfsql_training_snapshot"
        self.cursor.register(view, arrow)
        try:
            self.cursor.execute("begin transaction")
            self.cursor.execute(f"delete from {table} where data_checksum = ?", [snapshot.checksum])
            self.cursor.execute(
                f"insert into {table} select data_checksum, row_index, pair_hash, prompt, chosen, rejected, "
                f"cast(extra as JSON) from {view}"
            )
            self.cursor.execute("commit")
        except Exception:
            with contextlib.suppress(Exception):
                self.cursor.execute("rollback")
            raise
        finally:
            self.cursor.unregister(view)
        return True

    # ------------------------------------------------------------------------------------ runs

    def find_run(self, target: str, run_key: str) -> dict[str, Any] | None:
        """The latest run of `target` with this run key (any status)."""
        result = self.cursor.execute(
            f"select * from {self.table('training_runs')} where target = ? and run_key = ? "
            "order by started_at desc limit 1",
            [target, run_key],
        )
        rows = result.fetchall()
        if not rows:
            return None
        return dict(zip([d[0] for d in result.description], rows[0], strict=True))

    def insert_run(self, values: dict[str, Any]) -> None:
        columns = list(values)
        placeholders = ", ".join("?" for _ in columns)
        names = ", ".join(quote_identifier(c) for c in columns)
        self.cursor.execute(
            f"insert or replace into {self.table('training_runs')} ({names}) values ({placeholders})",
            [_sql_value(values[c]) for c in columns],
        )

    def update_run(self, run_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{quote_identifier(c)} = ?" for c in values)
        self.cursor.execute(
            f"update {self.table('training_runs')} set {assignments} where run_id = ?",
            [*(_sql_value(v) for v in values.values()), run_id],
        )

    # ----------------------------------------------------------------------------------- steps

    def sync_steps(self, run_id: str, steps_file: Path) -> int:
        """Make the run's rows in training_steps equal the lines of its steps.jsonl; returns the row count."""
        import pyarrow as pa

        rows = []
        if steps_file.exists():
            with steps_file.open("rb") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError:  # a line being written by another process right now
                        continue
                    row["metrics"] = orjson.dumps(row.get("metrics") or {}).decode()
                    rows.append({c: row.get(c) for c in STEP_COLUMNS})
        table = self.table("training_steps")
        self.cursor.execute("begin transaction")
        try:
            self.cursor.execute(f"delete from {table} where run_id = ?", [run_id])
            if rows:
                view = "__wfsql_training_steps"
                self.cursor.register(view, pa.Table.from_pylist(rows))
                try:
                    casts = ", ".join(
                        f"cast({quote_identifier(c)} as {t}) as {quote_identifier(c)}" for c, t in STEP_COLUMNS.items()
                    )
                    self.cursor.execute(f"insert into {table} select {casts} from {view}")
                finally:
                    self.cursor.unregister(view)
            self.cursor.execute("commit")
        except Exception:
            with contextlib.suppress(Exception):
                self.cursor.execute("rollback")
            raise
        return len(rows)


def _sql_value(value: Any) -> Any:
    if isinstance(value, dict):
        return orjson.dumps(value, default=str).decode()
    return value
