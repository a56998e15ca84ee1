"""A1111's prompt conditioning for SD 1.x: emphasis weights and prompts longer than CLIP's 75 tokens.

diffusers truncates at 77 tokens and ignores `(word:1.2)`; A1111 users rely on both. As in A1111
(modules/sd_hijack_clip.py): the prompt is split into chunks of 75 tokens (BREAK closes a chunk), each chunk is
encoded as BOS + tokens + EOS padding, its token vectors are scaled by their weights and the chunk is rescaled to its
original mean, and the chunks are concatenated. The negative prompt is padded to the same number of chunks.
With no emphasis and a short prompt this equals diffusers' own encoding.
"""

from __future__ import annotations

from typing import Any

import torch

from .prompts import parse_attention

CHUNK = 75


def _chunks(pipe: Any, text: str) -> list[tuple[list[int], list[float]]]:
    tokenizer = pipe.tokenizer
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []

    def close() -> None:
        nonlocal tokens, weights
        chunks.append((tokens, weights))
        tokens, weights = [], []

    for segment, weight in parse_attention(text):
        if weight == -1:  # BREAK
            close()
            continue
        # Multi-vector textual-inversion tokens are expanded first, as diffusers' own encode_prompt does.
        segment = pipe.maybe_convert_prompt(segment, tokenizer) if hasattr(pipe, "maybe_convert_prompt") else segment
        ids = tokenizer(segment, add_special_tokens=False, truncation=False).input_ids
        for token in ids:
            if len(tokens) == CHUNK:
                close()
            tokens.append(token)
            weights.append(weight)
    if tokens or not chunks:
        close()
    return chunks


def _encode(pipe: Any, chunk: tuple[list[int], list[float]], clip_skip: int, device: torch.device) -> torch.Tensor:
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    tokens, weights = chunk
    pad = tokenizer.pad_token_id
    ids = [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id]
    ids += [pad] * (CHUNK + 2 - len(ids))
    scale = torch.tensor([1.0, *weights, 1.0] + [1.0] * (CHUNK + 2 - len(weights) - 2), device=device)
    input_ids = torch.tensor([ids], device=device)
    if clip_skip > 1:
        output = encoder(input_ids, output_hidden_states=True)
        # transformers >= 5.6 flattened CLIPTextModel (no `.text_model`), which also breaks diffusers' clip_skip
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
        hidden = final_norm(output.hidden_states[-clip_skip])
    else:
        hidden = encoder(input_ids)[0]
    if bool((scale != 1.0).any()):
        mean = hidden.mean()
        hidden = hidden * scale[None, :, None].to(hidden.dtype)
        hidden = hidden * (mean / hidden.mean())
    return hidden


@torch.no_grad()
def sd1_embedding(pipe: Any, text: str, clip_skip: int) -> torch.Tensor:
    """One prompt's conditioning, [1, 77 x chunks, dim], as A1111 encodes it (no padding to another prompt)."""
    first = next(pipe.unet.parameters())
    encoded = [_encode(pipe, chunk, clip_skip, first.device) for chunk in _chunks(pipe, text)]
    return torch.cat(encoded, dim=1).to(first.dtype)


@torch.no_grad()
def sd1_embeddings(pipe: Any, prompt: str, negative: str, clip_skip: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds, negative_prompt_embeds) of equal length, for one image; the pipeline repeats them per batch."""
    device = pipe.text_encoder.device
    positive, negative_chunks = _chunks(pipe, prompt), _chunks(pipe, negative)
    while len(negative_chunks) < len(positive):
        negative_chunks.append(([], []))
    while len(positive) < len(negative_chunks):
        positive.append(([], []))
    encode = [_encode(pipe, chunk, clip_skip, device) for chunk in positive]
    encode_negative = [_encode(pipe, chunk, clip_skip, device) for chunk in negative_chunks]
    dtype = pipe.unet.dtype
    return torch.cat(encode, dim=1).to(dtype), torch.cat(encode_negative, dim=1).to(dtype)


def is_plain(text: str) -> bool:
    """True when the prompt has no emphasis or BREAK (the case diffusers' own encoding already gets right)."""
    return all(weight == 1.0 for _, weight in parse_attention(text))
