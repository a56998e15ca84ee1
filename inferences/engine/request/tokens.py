"""CLIP's tokens, without a model: the BPE vocabulary every SD 1.x and SDXL checkpoint shares (shipped in
configs/sd15/tokenizer). A1111 activates a textual-inversion embedding where its name's token ids occur in a prompt
(textual_inversion.py: `tokenize([name])`, `find_embedding_at_position`), so case and the spacing of punctuation do
not matter there: "easynegative" activates EasyNegative, "bad - hands - 5" activates bad-hands-5 (issue 30.6)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..configs_path import config_folder


@lru_cache(maxsize=1)
def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(config_folder("sd15") / "tokenizer"))


def token_ids(text: str, tokenizer: Any = None) -> list[int]:
    """The text's token ids, without BOS/EOS (A1111's `tokenize`)."""
    return list((tokenizer or clip_tokenizer())(text, add_special_tokens=False, truncation=False).input_ids)


def occurs(tokens: list[int], name: list[int]) -> bool:
    """Whether `name`'s ids occur in `tokens` at any position (A1111 tries every position, even within a word)."""
    width = len(name)
    return width > 0 and any(tokens[start : start + width] == name for start in range(len(tokens) - width + 1))
