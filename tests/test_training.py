"""Training targets: config errors, the DAG, and TRL runs on a tiny random Llama (real SmolLM2 tokenizer).

The toy data has one right answer, so DPO must learn it: loss falls from ln 2 and the reward accuracy
rises from 0. Runs use a few optimizer steps each; the module's tests take well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load, query, statuses, write_files
from wfsql.api import RunOptions
from wfsql.errors import WfsqlError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("trl")
pytest.importorskip("peft")

PAIRS_SQL = """
{{ config(materialized='table') }}
select
    i as pair_id,
    [{'role': 'user', 'content': 'Question ' || i || ': is the sky blue?'}] as prompt,
    'Yes, it is blue.' as chosen,
    'No idea, go away.' as rejected
from range({{ var('n_pairs', 4) }}) as t(i)
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from wfsql.llm.models import ModelUnavailableError, make_tiny_model

    try:
        return make_tiny_model(tmp_path_factory.mktemp("tiny_train"), seed=0).source
    except ModelUnavailableError as error:  # pragma: no cover - needs the default model's tokenizer
        pytest.skip(f"the tiny model borrows the default model's tokenizer: {error}")


def _project(root: Path, training: str, *, extra: str = "", pairs_sql: str = PAIRS_SQL) -> Path:
    write_files(
        root,
        {
            "wfsql_project.yml": f"name: proj\nthreads: 1\n{textwrap.dedent(extra)}training:\n"
            + textwrap.indent(textwrap.dedent(training).strip("\n"), "  ")
            + "\n",
            "models/pairs.sql": pairs_sql,
        },
    )
    return root


def _steps(root: Path, stage: str | None = None) -> list[dict[str, Any]]:
    where = f"where stage = '{stage}'" if stage else ""
    rows = query(
        root,
        f"select stage, step, loss, rewards_accuracies, rewards_margins, num_tokens from training_steps {where} "
        "order by stage desc, step",
    )
    keys = ("stage", "step", "loss", "rewards_accuracies", "rewards_margins", "num_tokens")
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        (
            "train_dpo:\n  pairs: pairs\n  dpo: {betta: 0.1}\n",
            ["training.train_dpo.dpo.betta (line 6)", "unknown key", "did you mean 'beta'"],
        ),
        ("train_dpo:\n  dpo: {beta: -1}\n", ["training.train_dpo.dpo.beta (line 5)", "greater than 0"]),
        ("train_dpo:\n  stages: [dpo, sft]\n", ["training.train_dpo.stages", "SFT must come before DPO"]),
        ("train_dpo:\n  lora: maybe\n", ["training.train_dpo.lora (line 5)", "true, false or a mapping"]),
        ("train_dpo:\n  max_length: lots\n", ["training.train_dpo.max_length", "whole number"]),
        ("train_dpo:\n  stages: [dpo]\n  sft: {epochs: 1}\n", ["training.train_dpo.sft", "add it to stages"]),
        ("train_dpo:\n  pairs: pears\n", ["training.train_dpo.pairs: no model or seed named 'pears'", "'pairs'"]),
    ],
)
def test_a_bad_training_config_names_file_key_line_and_fix(tmp_path: Path, training: str, expected: list[str]) -> None:
    root = _project(tmp_path / "p", training)
    with pytest.raises(WfsqlError) as caught:
        load(root).compile()
    text = caught.value.render()
    assert "wfsql_project.yml" in text
    for part in expected:
        assert part in text, text
    assert "hint:" in text


def test_trained_from_must_name_a_training_target(tmp_path: Path) -> None:
    root = _project(
        tmp_path / "p",
        "train_dpo: {stages: [dpo]}\n",
        extra="llm:\n  models:\n    trained: {trained_from: train_dop}\n",
    )
    with pytest.raises(WfsqlError, match=r"trained_from: no training target named 'train_dop'.*'train_dpo'"):
        load(root).compile()


def test_training_is_a_dag_node_left_out_of_a_plain_build(tmp_path: Path) -> None:
    root = _project(
        tmp_path / "p",
        "train_dpo: {stages: [dpo]}\n",
        extra="llm:\n  models:\n    trained: {trained_from: train_dpo}\n",
    )
    write_files(
        root,
        {
            "models/answers.sql": "{{ config(materialized='table') }}\n"
            "select llm_generate('hi', model := 'trained') as answer",
        },
    )
    project = load(root)
    manifest = project.compile()
    train = manifest.nodes["train.proj.train_dpo"]
    assert train.resource_type == "train" and train.depends_on == ("model.proj.pairs",)
    assert manifest.dag.parents("model.proj.answers") == ("train.proj.train_dpo",)
    assert [n.name for n in project.ls(["+train_dpo"])] == ["pairs", "train_dpo"]
    results = project.build()  # no selection: the pairs model only
    assert statuses(results) == {"pairs": "success"}
    assert "train.proj.train_dpo" in {n.unique_id for n in project.ls(["resource_type:train"])}
    with pytest.raises(WfsqlError, match="no training target named 'train_dop'; did you mean 'train_dpo'"):
        project.train(["train_dop"])


def test_wfsql_train_on_a_project_without_targets_says_what_to_do(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wfsql.cli import app

    write_files(tmp_path / "p", {"wfsql_project.yml": "name: p\n", "models/a.sql": "select 1 as x"})
    result = CliRunner().invoke(app, ["train", "--project-dir", str(tmp_path / "p")])
    assert result.exit_code != 0
    assert "declares no training target" in str(result.exception)
    assert "training:" in result.exception.hint  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------ training


def test_dpo_learns_the_toy_preference_and_records_the_run(tmp_path: Path, tiny_model: str) -> None:
    root = _project(
        tmp_path / "p",
        f"""
        train_dpo:
          base_model: {tiny_model}
          stages: [dpo]
          dpo: {{epochs: 3, learning_rate: 1.0e-3, beta: 0.1}}
          lora: false
          batch_size: 4
        """,
    )
    results = load(root).train()
    assert statuses(results) == {"pairs": "success", "train_dpo": "success"}, [r.message for r in results.results]
    steps = _steps(root)
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert math.isclose(steps[0]["loss"], math.log(2), abs_tol=1e-3)  # policy = reference at the start
    assert steps[0]["rewards_accuracies"] == 0.0
    assert steps[-1]["loss"] < steps[0]["loss"] - 0.1
    assert steps[-1]["rewards_accuracies"] == 1.0 and steps[-1]["rewards_margins"] > 0.2
    run = query(
        root,
        "select status, n_pairs, data_checksum, device, precision, max_length, steps, model_dir, final_loss, "
        "config->>'$.dpo.beta' from training_runs",
    )
    status, n_pairs, checksum, device, precision, max_length, n_steps, model_dir, final_loss, beta = run[0]
    assert (status, n_pairs, device, precision, n_steps, beta) == ("success", 4, "cpu", "fp32", 3, "0.1")
    assert 20 < max_length < 100  # from the data: the longest prompt + reply, not TRL's 1024
    assert final_loss == pytest.approx(steps[-1]["loss"])
    assert Path(model_dir, "config.json").is_file()
    snapshot = query(root, f"select count(*), min(chosen) from training_data where data_checksum = '{checksum}'")
    assert snapshot == [(4, "Yes, it is blue.")]
    run_dir = Path(model_dir).parents[1]
    assert (run_dir / "data.jsonl").read_text().count("\n") == 4
    assert json.loads((run_dir.parent / "latest.json").read_text())["run_id"] == run_dir.name

    again = load(root).train()  # same settings, data and base model: the finished run is reused
    assert statuses(again)["train_dpo"] == "reused"
    assert query(root, "select count(*) from training_runs") == [(1,)]

    changed = load(root, vars={"n_pairs": 5}).train(options=RunOptions(extra={"max_steps": 1}))
    assert statuses(changed)["train_dpo"] == "success"  # new data: a new run, with another checksum
    checksums = query(root, "select count(distinct data_checksum), count(*) from training_runs")
    assert checksums == [(2, 2)]


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path, tiny_model: str) -> None:
    from transformers import TrainerCallback

    from wfsql.training import worker

    class Interrupt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                raise KeyboardInterrupt("power cut")

    root = _project(
        tmp_path / "p",
        f"""
        train_dpo:
          base_model: {tiny_model}
          stages: [dpo]
          dpo: {{max_steps: 4, learning_rate: 1.0e-3}}
          lora: false
          batch_size: 2
          save_steps: 2
        """,
    )
    worker.EXTRA_CALLBACKS.append(Interrupt())
    try:
        with pytest.raises(KeyboardInterrupt):
            load(root).train()
    finally:
        worker.EXTRA_CALLBACKS.clear()
    assert query(root, "select status from training_runs") == [("running",)]  # as if the process was killed
    run_dir = Path(query(root, "select output_dir from training_runs")[0][0])
    assert (run_dir / "dpo" / "checkpoints" / "checkpoint-2").is_dir()

    results = load(root).train()
    assert statuses(results)["train_dpo"] == "success", [r.message for r in results.results]
    assert [s["step"] for s in _steps(root)] == [1, 2, 3, 4]  # step 3 was logged twice; kept once
    status, attempts, summary = query(root, "select status, attempts, summary from training_runs")[0]
    assert (status, attempts) == ("success", 2)
    assert json.loads(summary)["stages"]["dpo"]["resumed_from"] == "checkpoint-2"
    assert not (run_dir / "dpo" / "checkpoints").exists()  # checkpoints go once the stage is done


def test_sft_then_dpo_with_lora_gives_a_model_the_llm_block_can_name(tmp_path: Path, tiny_model: str) -> None:
    root = _project(
        tmp_path / "p",
        f"""
        train_dpo:
          base_model: {tiny_model}
          sft: {{max_steps: 1, learning_rate: 1.0e-3}}
          dpo: {{max_steps: 1, learning_rate: 1.0e-3}}
          lora: {{r: 4, alpha: 8}}
          batch_size: 2
          launch: "{{python}}"
        """,
        extra="llm:\n  models:\n    trained: {trained_from: train_dpo, max_new_tokens: 4}\n",
    )
    results = load(root).train(["train_dpo"])
    assert statuses(results)["train_dpo"] == "success", [r.message for r in results.results]
    steps = _steps(root)
    assert [(s["stage"], s["step"]) for s in steps] == [("sft", 1), ("dpo", 1)]
    assert steps[0]["rewards_accuracies"] is None and steps[0]["num_tokens"] > 0
    lora, model_dir, run_dir = query(root, "select lora, model_dir, output_dir from training_runs")[0]
    assert lora is True and model_dir.endswith("dpo/model")
    assert (Path(run_dir) / "sft" / "adapter" / "adapter_config.json").is_file()
    assert (Path(run_dir) / "worker.log").is_file()  # trained in a child process (launch:)

    from wfsql.llm.runtime import LLMRuntime, LLMSettings

    project = load(root)
    runtime = LLMRuntime(LLMSettings.parse(project.config.llm, project.config.root))
    spec = runtime.spec("trained")
    assert spec.source == model_dir and spec.max_new_tokens == 4
    assert spec.model_id.startswith("dir:model:")


@pytest.mark.slow
def test_the_real_default_model_trains_a_few_steps(tmp_path: Path) -> None:
    """SmolLM2-135M-Instruct (converted once into the wfsql cache): SFT and DPO, 2 steps each, LoRA, fp32."""
    from wfsql.llm.models import ModelUnavailableError, default_model_spec

    try:
        default_model_spec()
    except ModelUnavailableError as error:
        pytest.skip(str(error))
    root = _project(
        tmp_path / "p",
        """
        train_dpo:
          base_model: default
          sft: {max_steps: 2, learning_rate: 1.0e-4}
          dpo: {max_steps: 2, learning_rate: 5.0e-5, beta: 0.1}
          lora: {r: 8, alpha: 16}
          batch_size: 2
        """,
        extra="llm:\n  models:\n    trained: {trained_from: train_dpo, max_new_tokens: 8}\n",
    )
    results = load(root).train()
    assert statuses(results)["train_dpo"] == "success", [r.message for r in results.results]
    steps = _steps(root)
    assert [(s["stage"], s["step"]) for s in steps] == [("sft", 1), ("sft", 2), ("dpo", 1), ("dpo", 2)]
    assert all(math.isfinite(s["loss"]) for s in steps)
    assert math.isclose(steps[2]["loss"], math.log(2), abs_tol=1e-3)
    precision, base_id, model_dir = query(root, "select precision, base_model_id, model_dir from training_runs")[0]
    assert precision == "fp32" and base_id.startswith("gguf:SmolLM2-135M-Instruct")

    from wfsql.llm import TransformersBackend
    from wfsql.llm.runtime import LLMRuntime, LLMSettings

    project = load(root)
    spec = LLMRuntime(LLMSettings.parse(project.config.llm, project.config.root)).spec("trained")
    assert spec.source == model_dir
    answer = TransformersBackend(spec).generate(["Is the sky blue?"], max_new_tokens=8)[0]
    assert answer.status == "ok" and answer.value


def test_the_gpu_benchmark_script_runs_on_cpu_with_a_tiny_model(tmp_path: Path) -> None:
    """benchmarks/gpu_train.py is meant for a CUDA host; its Python path (random model with the real
    tokenizer, pairs from conversations, `wfsql train`, figures from the tables) runs here in tiny form."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"
    spec = importlib.util.spec_from_file_location("gpu_train", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--device", "cpu", "--layers", "1", "--hidden", "32", "--steps", "1", "--batch-size", "2"]
    argv += ["--conversations", "0", "--max-length", "auto", "--max-prompt-length", "auto", "--workdir", str(tmp_path)]
    figures = module.main(argv)
    assert figures["sft_tokens_per_s"] > 0 and figures["dpo_tokens_per_s"] > 0
    assert figures["dpo_peak_memory_gb"] > 0


@pytest.mark.slow
def test_two_processes_train_one_run_through_launch(tmp_path: Path, tiny_model: str) -> None:
    """`launch:` starts the worker under torch's launcher with 2 processes (gloo on CPU, DDP): one run,
    each step logged once, LoRA merged once, the tables filled from the folder."""
    root = _project(
        tmp_path / "p",
        f"""
        train_dpo:
          base_model: {tiny_model}
          sft: {{max_steps: 2, learning_rate: 1.0e-3}}
          dpo: {{max_steps: 2, learning_rate: 1.0e-3}}
          lora: {{r: 4, alpha: 8}}
          batch_size: 1
          launch: "{{python}} -m torch.distributed.run --nproc_per_node 2"
        """,
    )
    results = load(root).train()
    assert statuses(results)["train_dpo"] == "success", [r.message for r in results.results]
    assert [(s["stage"], s["step"]) for s in _steps(root)] == [("sft", 1), ("sft", 2), ("dpo", 1), ("dpo", 2)]
    summary = json.loads(query(root, "select summary from training_runs")[0][0])
    assert summary["processes"] == 2
