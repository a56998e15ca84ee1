#!/usr/bin/env bash
# The GPU report of issue 28 (bench/gpu_throughput.py: the engine beside plain diffusers, compile modes, fp8, the
# stage breakdown, a warm restart, the batch window, SDXL) on a machine with a CUDA GPU; about 8 minutes on an
# H200 (--budget 480 skips what would not fit). Run from the project root:
#     bash bench/gpu.sh [extra arguments for gpu_throughput.py]
# Uses the machine's python3 with its CUDA build of torch ($PYTHON to choose another). Without a GPU,
#     PYTHON=.venv/bin/python bash bench/gpu.sh --smoke
# runs every section on the CPU in about a minute (the script's check; its figures mean nothing). The rest of the
# engine's stack comes from wheels in .whl/ when that folder exists (`make gpu-wheels` fills it: the device
# machine reaches no package index), else from what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"${PYTHON:-python3}" bench/gpu_throughput.py "$@"
