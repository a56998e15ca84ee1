"""A1111's prompt parser (lark's Earley over its grammar) against the engine's linear one, on adversarial prompts.

    .venv/bin/python bench/prompt_parse.py [--earley-max 300]

For each pattern, prompts of growing length: Earley's parse time up to --earley-max characters (it grows with the
cube of the length: minutes at a few thousand), and the engine's `prompt_schedule` (parse and the texts of 20
steps) up to 20,000, the longest prompt the API accepts. Medians of 5. Not a test: figures go in docs/engine.md.
"""

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import lark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATTERNS = {"[a|b] ": "alternations", "(:": "open emphasis", "[a:b:0.5]": "edits", "[(a": "unclosed", "]:[": "strays"}


def median_ms(function, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--earley-max", type=int, default=300)
    args = parser.parse_args()

    from inferences.engine.request.prompt_schedule import prompt_schedule
    from tests.a1111_prompt_parser import EARLEY

    def a1111_parse(prompt: str) -> None:
        with contextlib.suppress(lark.exceptions.LarkError):  # A1111 then uses the prompt as written
            EARLEY.parse(prompt)

    print(f"{'pattern':14} {'chars':>6} {'A1111 Earley':>13} {'engine':>10}")
    for pattern, name in PATTERNS.items():
        for length in (100, args.earley_max, 2_000, 20_000):
            prompt = (pattern * (length // len(pattern) + 1))[:length]
            earley = f"{median_ms(lambda p=prompt: a1111_parse(p), 1):10.1f} ms" if length <= args.earley_max else "-"

            def engine(p: str = prompt) -> None:
                prompt_schedule.cache_clear()
                prompt_schedule(p, 20)

            print(f"{name:14} {length:6} {earley:>13} {median_ms(engine):7.2f} ms")


if __name__ == "__main__":
    main()
