"""The long fuzzing run: schemathesis over every route and method, with a token and without.

    [DATABASE_URL=postgres://...] .venv/bin/python bench/fuzz_api.py [--examples 200]

Runs tests/security/test_fuzz.py with ESD_FUZZ_EXAMPLES and prints how many requests were generated and how they
were answered. Any 5xx or any answer outside the documented schema fails the run. Not part of `make test` (which
runs the same test with 15 examples per route).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=200)
    args = parser.parse_args()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/security/test_fuzz.py"],
        cwd=ROOT,
        env={**os.environ, "ESD_FUZZ_EXAMPLES": str(args.examples), "ESD_FUZZ_RANDOM": "1"},
        check=False,
    )
    summary = json.loads((ROOT / "tests/security/artifacts/fuzz.json").read_text())
    print(f"{summary.get('requests', 0)} requests in {time.perf_counter() - started:.0f} s: {summary}")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
