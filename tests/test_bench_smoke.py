"""The GPU bench's defaults run (issue 28.6: `bench/gpu_throughput.py` had never run on a GPU, and its default
batch of 16 stopped at the engine's batch limit). Its `--smoke` mode runs every default row on this CPU."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_bench_runs_every_default_row() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    script = ["/bin/bash", str(ROOT / "bench" / "gpu.sh"), "--smoke"]
    done = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if "| batch 1:" in line]
    assert [row.split()[0] for row in rows] == ["fp32", "fp32", "fp32+default", "fp32+max-autotune"]
    assert all("| batch 8:" in row and "| batch 16:" in row and "16 concurrent:" in row for row in rows)
