"""A1111 prompt syntax: extra-network tags (`<lora:name:weight>`) and emphasis (`(word:1.2)`, `[word]`).

The emphasis parser follows A1111's `parse_prompt_attention` (modules/prompt_parser.py) so the same prompt gets the
same per-word weights; `conditioning.py` applies them to the text encoder's output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
ATTENTION = re.compile(
    r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""",
    re.VERBOSE,
)
BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)


@dataclass(frozen=True)
class NetworkTag:
    kind: str  # "lora", "hypernet", ...
    name: str
    weight: float


def extract_networks(prompt: str) -> tuple[str, list[NetworkTag]]:
    """Remove `<kind:name[:weight]>` tags from the prompt and return them (A1111's extra_networks.parse_prompt)."""
    tags: list[NetworkTag] = []

    def take(match: re.Match[str]) -> str:
        kind, args = match.group(1), match.group(2).split(":")
        weight = 1.0
        if len(args) > 1:
            try:
                weight = float(args[1])
            except ValueError:
                weight = 1.0
        tags.append(NetworkTag(kind="lora" if kind == "lyco" else kind, name=args[0].strip(), weight=weight))
        return ""

    return EXTRA_NETWORK.sub(take, prompt), tags


def parse_attention(text: str) -> list[tuple[str, float]]:
    """`a (cat:1.3) [dog]` → [("a ", 1.0), ("cat", 1.3), (" ", 1.0), ("dog", 0.909...)]; BREAK is kept as a marker."""
    result: list[list[str | float]] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for entry in result[start:]:
            entry[1] = float(entry[1]) * multiplier

    for match in ATTENTION.finditer(text):
        piece, weight = match.group(0), match.group(1)
        if piece.startswith("\\"):
            result.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(result))
        elif piece == "[":
            square_brackets.append(len(result))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            for index, part in enumerate(BREAK.split(piece)):
                if index > 0:
                    result.append(["BREAK", -1.0])
                result.append([part, 1.0])
    for start in round_brackets:
        multiply_range(start, 1.1)
    for start in square_brackets:
        multiply_range(start, 1 / 1.1)

    merged: list[tuple[str, float]] = []
    for part, part_weight in result:
        if part == "" and part_weight != -1:
            continue
        if merged and merged[-1][1] == part_weight and part_weight != -1:
            merged[-1] = (merged[-1][0] + str(part), float(part_weight))
        else:
            merged.append((str(part), float(part_weight)))
    return merged or [("", 1.0)]


# A1111's prompt_parser.re_AND and re_weight (composable diffusion)
AND = re.compile(r"\bAND\b")
TRAILING_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def composable(text: str) -> list[tuple[str, float]]:
    """A1111's get_multicond_prompt_list for one prompt: its sub-prompts split at `AND`, each with its trailing
    `:weight` (1.0 without one) taken off: `a cat AND a dog:0.5` is [("a cat", 1.0), ("a dog", 0.5)]."""
    parts = []
    for sub in AND.split(text):
        match = TRAILING_WEIGHT.search(sub)
        body, weight = match.groups() if match is not None else (sub, None)
        parts.append((body, float(weight) if weight is not None else 1.0))
    return parts


def is_composable(text: str) -> bool:
    """Whether a prompt needs composable guidance: several sub-prompts, or one with a weight other than 1."""
    parts = composable(text)
    return len(parts) > 1 or parts[0][1] != 1.0
