#!/usr/bin/env bash
# Both GPU checks on a CUDA host with no network, as run on one H200 (docs/scale-out.md, Figures).
# Prepare here, in the .gpu/ folder (git-ignored), and send it along: .gpu/whl/ (py3.12 manylinux wheels of what the host
# lacks: transformers, trl, datasets, dill, multiprocess, duckdb, sqlglot, outlines, outlines_core, pydantic and its
# deps, jsonschema and its deps, genson, diskcache, orjson, zstandard, peft, typer; `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ...`), .gpu/tokenizer/ (the tokenizer
# files of the converted default model) and .gpu/conversations.jsonl (sample records, one JSON per line).
# Usage: bash benchmarks/gpu_offline_run.sh   (LLM_BUDGET / TRAIN_BUDGET seconds, LLM_ARGS / TRAIN_ARGS extra flags)
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl > "$OUT/pip.log" 2>&1 || { echo "pip failed"; tail -20 "$OUT/pip.log"; }
export PYTHONPATH=/tmp/site:$PWD PYTHON=python3
echo "install: $(( $(date +%s) - t0 )) s"
python3 -c "import torch, transformers, trl, duckdb, sqlglot, datasets, pyarrow, peft, accelerate; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'pyarrow', pyarrow.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__, 'cuda', torch.cuda.is_available())" 2>&1
nproc; free -g | head -2
echo "=== gpu_llm $(date +%T)"
timeout ${LLM_BUDGET:-200} python3 benchmarks/gpu_llm.py --tokenizer .gpu/tokenizer ${LLM_ARGS:-} 2>&1 | grep -v "it/s\]" | tee "$OUT/gpu_llm.log" | tail -40
echo "rc=${PIPESTATUS[0]}"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv,noheader
echo "=== gpu_train $(date +%T)"
timeout ${TRAIN_BUDGET:-260} python3 benchmarks/gpu_train.py --tokenizer .gpu/tokenizer --conversations-file .gpu/conversations.jsonl ${TRAIN_ARGS:-} 2>&1 | grep -v "it/s\]" | tee "$OUT/gpu_train.log" | tail -40
echo "rc=${PIPESTATUS[0]}"
echo "total: $(( $(date +%s) - t0 )) s"
