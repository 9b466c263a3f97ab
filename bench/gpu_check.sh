#!/usr/bin/env bash
# The real GPU path in one command, for a CUDA machine WITHOUT hub access (see bench/gpu_check.py):
# full-size random-weight models from stylegrpo/architectures.py, fp32-vs-bf16 judges, a few GRPO steps of
# the 24 GB recipe (transformers generation, and vLLM when installed); figures in one JSON file.
#   bench/gpu_check.sh [--out gpu_check.json] [--steps 3] [--tokens 250] [--no-vllm]
#   bench/gpu_check.sh --dry-run          # CPU, shrunken models: checks the script (the tests run this)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
# 15 minutes at most: the check itself is sized for under 8 minutes on one modern GPU
HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 exec timeout "${GPU_CHECK_TIMEOUT:-900}" "$PY" bench/gpu_check.py "$@"
