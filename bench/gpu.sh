#!/usr/bin/env bash
# GPU throughput of the engine (bench/gpu_throughput.py) on a machine with a CUDA GPU. Run from the project root:
#     bash bench/gpu.sh [extra arguments for gpu_throughput.py]
# Uses the machine's python3 with its CUDA build of torch ($PYTHON to choose another). Without a GPU,
#     PYTHON=.venv/bin/python bash bench/gpu.sh --smoke
# runs every default row on the CPU in seconds (the script's check; its figures mean nothing). The rest of the engine's stack (diffusers, transformers,
# accelerate, safetensors, peft, tokenizers, huggingface-hub) comes from wheels in .whl/ when that folder exists
# (the device machine reaches no package index), else from what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"${PYTHON:-python3}" bench/gpu_throughput.py "$@"
