"""How A1111 names model files in payloads: titles with folders and hashes, names with or without extension."""

from __future__ import annotations


def model_title_name(title: str) -> str:
    """A1111's checkpoint title ("sub/v1-5-pruned.safetensors [6ce0161689]") -> the file name it names."""
    return title.split(" [", 1)[0].replace("\\", "/").rsplit("/", 1)[-1].strip()


def names_model(name: str, file_name: str) -> bool:
    """Whether an A1111 model name (with or without its extension) names this file."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name else file_name
    return name in (file_name, stem)
