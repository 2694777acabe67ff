"""`wfsql export`: pairs written as TRL DPO rows, the wildfeedback.json shape, and Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from wfsql.api import Project, RunOptions
from wfsql.console import Console
from wfsql.errors import WfsqlError

PAIRS_SQL = """
{{ config(materialized='table') }}
select * from (values
  ('c1', [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'hello'},
          {'role': 'user', 'content': 'capital of France?'}], 'Paris.', 'Lyon.'),
  ('c2', [{'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': '2+2?'}], '4', 'five')
) as t(conversation_id, prompt, chosen, rejected)
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "models").mkdir()
    (tmp_path / "wfsql_project.yml").write_text("name: ex\n")
    (tmp_path / "models" / "pairs.sql").write_text(PAIRS_SQL)
    (tmp_path / "models" / "bad_pairs.sql").write_text(
        "{{ config(materialized='table') }}\n"
        "select [{'role': 'user', 'content': 'q'}, {'role': 'assistant', 'content': 'a'}] as prompt, "
        "'x' as chosen, 'y' as rejected"
    )
    (tmp_path / "models" / "not_pairs.sql").write_text("{{ config(materialized='table') }}\nselect 1 as a")
    project = Project.load(tmp_path, console=Console(quiet=True))
    assert project.run(RunOptions()).success
    return project


def test_trl_rows_are_message_lists(project: Project, tmp_path: Path) -> None:
    path, count = project.export("pairs", "trl", tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert count == 2 and len(rows) == 2
    first = next(r for r in rows if r["chosen"][0]["content"] == "Paris.")
    assert first["prompt"][-1] == {"role": "user", "content": "capital of France?"}
    assert first["rejected"] == [{"role": "assistant", "content": "Lyon."}]


def test_wildfeedback_shape_ends_with_human(project: Project, tmp_path: Path) -> None:
    path, _ = project.export("pairs", "wildfeedback", tmp_path / "wf.json")
    rows = json.loads(path.read_text())
    for row in rows:
        assert row["conversations"][-1]["from"] == "human"
        assert set(row) == {"conversations", "chosen", "rejected"}
    brief = next(r for r in rows if r["chosen"]["value"] == "4")
    assert brief["conversations"][0] == {"from": "system", "value": "be brief"}


def test_parquet_keeps_every_column(project: Project, tmp_path: Path) -> None:
    path, _ = project.export("pairs", "parquet", tmp_path / "p.parquet")
    table = pq.read_table(path)
    assert set(table.column_names) == {"conversation_id", "prompt", "chosen", "rejected"}
    assert table.num_rows == 2


def test_prompt_must_end_with_user_turn(project: Project, tmp_path: Path) -> None:
    with pytest.raises(WfsqlError, match="must end with a user turn"):
        project.export("bad_pairs", "trl", tmp_path / "bad.jsonl")
    assert not (tmp_path / "bad.jsonl").exists()


def test_model_without_pair_columns_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    with pytest.raises(WfsqlError, match="no prompt, chosen, rejected column"):
        project.export("not_pairs", "trl", tmp_path / "x.jsonl")


def test_default_export_names_say_the_format_once(project: Project) -> None:
    names = {fmt: project.export("pairs", fmt)[0].name for fmt in ("trl", "wildfeedback", "parquet")}
    assert names == {"trl": "pairs.trl.jsonl", "wildfeedback": "pairs.wildfeedback.json", "parquet": "pairs.parquet"}
