"""The GPU report's defaults run (issue 28.6: `bench/gpu_throughput.py` had never run on a GPU, and its default
batch of 16 stopped at the engine's batch limit). Its `--smoke` mode runs every section on this CPU: the tiny
models, 64x64, 2 steps, dynamo's eager backend; fp8 is refused here, which its row reports."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_report_runs_every_section() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    script = ["/bin/bash", str(ROOT / "bench" / "gpu.sh"), "--smoke"]
    done = subprocess.run(script, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for section in "ABCDEFG":
        assert f"\n{section}. " in out, f"section {section} missing:\n{out}"
    assert "failed" not in out.replace("fp8+reduce-overhead: failed: EngineError: ESD_ENGINE_DTYPE=fp8 needs", "")
    lines = out.splitlines()
    plain = next(line for line in lines if line.startswith("  batch 1:"))
    assert "it/s" in plain and "| batch 8:" in plain
    rows = [line.split()[0] for line in lines if "| batch 1:" in line and "load" in line]
    assert rows == ["fp32", "fp32+default", "fp32+reduce-overhead"]  # each with the plain ratio and both crowds
    assert all(
        "x" in line and "| 4 at once:" in line and "| 8 at once:" in line for line in lines if "| batch 1:" in line
    )
    stages = [line.split()[0:2] for line in lines if "outside the loop" in line]
    assert stages == [["batch", "1"], ["batch", "8"], ["16", "jobs"]]
    assert "host waits in the loop (batch 1): not counted off CUDA" in out
    restarts = [line.split()[0] for line in lines if " process " in line and line.startswith("  ")]
    assert restarts == ["fp32+default"]  # the first compiled row's cache, in a new process
    assert sum(line.strip().startswith("window") for line in lines) == 3
    assert any("StableDiffusionXLPipeline" in line and "it/s" in line for line in lines)
    assert "report done" in out
