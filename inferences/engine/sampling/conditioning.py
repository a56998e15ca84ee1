"""A1111's prompt conditioning for SD 1.x and SDXL: emphasis weights and prompts longer than CLIP's 75 tokens.

diffusers truncates at 77 tokens and ignores `(word:1.2)`; A1111 users rely on both. As in A1111
(modules/sd_hijack_clip.py): the prompt is split into chunks of 75 tokens (BREAK closes a chunk), each chunk is
encoded as BOS + tokens + EOS padding, its token vectors are scaled by their weights and rescaled to the original
mean, and the chunks are concatenated. A prompt's scheduled texts (prompt editing) are encoded together: one batch
per chunk index, a shorter text padded with empty chunks, one mean for the batch (issue 30.4). With no emphasis and a
short prompt this equals diffusers' own encoding.

SDXL (A1111's sd_models_xl and the sgm conditioner it runs): each chunk goes through both text encoders, CLIP-L's
penultimate hidden states (its last ones minus `CLIP_stop_at_last_layers - 1` only with `sdxl_clip_l_skip`) and
OpenCLIP-G's penultimate ones, each weighted and mean-restored on its own, concatenated along the features; the
pooled text vector is G's projected output for the first chunk, unweighted. OpenCLIP pads after the end token with
0, CLIP-L with the end token. An empty negative prompt is all zeros (sgm's force_zero_embeddings).
"""

from __future__ import annotations

from typing import Any

import torch

from ..request.prompts import parse_attention

CHUNK = 75
# A1111's `comma_padding_backtrack` option (default 20): a chunk that fills up within this many tokens after a comma
# ends at the comma, and the words after it open the next chunk, rather than being cut in two
COMMA_BACKTRACK = 20


def _comma_id(tokenizer: Any) -> int | None:
    """A1111's `id_comma`, the vocabulary's ",</w>", looked up once per tokenizer: `get_vocab()` builds the whole
    49,408-entry dict each time (20 ms on CPU, twice per job: it was most of bench/engine_overhead.py's overhead)."""
    if not hasattr(tokenizer, "_esd_comma_id"):
        tokenizer._esd_comma_id = tokenizer.get_vocab().get(",</w>") if hasattr(tokenizer, "get_vocab") else None
    return tokenizer._esd_comma_id  # type: ignore[no-any-return]


def _chunks(pipe: Any, text: str) -> list[tuple[list[int], list[float]]]:
    """The prompt's token ids and weights in chunks of at most 75, as A1111's sd_hijack_clip.tokenize_line makes
    them: BREAK closes a chunk, and a chunk that fills up soon after a comma moves the words after it on."""
    tokenizer = pipe.tokenizer
    comma = _comma_id(tokenizer)
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close() -> None:
        nonlocal tokens, weights, last_comma
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    embeddings = getattr(tokenizer, "esd_embeddings", [])  # (name ids, vector tokens, sha): generate.embeddings
    for segment, weight in parse_attention(text):
        if segment == "BREAK" and weight == -1:  # A1111: a segment of weight -1 is a weight; BREAK closes a chunk
            close()
            continue
        ids = tokenizer(segment, add_special_tokens=False, truncation=False).input_ids
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == CHUNK and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                moved = (tokens[last_comma + 1 :], weights[last_comma + 1 :])
                tokens, weights = tokens[: last_comma + 1], weights[: last_comma + 1]
                close()
                tokens, weights = moved
            if len(tokens) == CHUNK:
                close()
            # A1111's find_embedding_at_position: an embedding where its name's ids start here, kept in one chunk
            name, vectors = next(((n, v) for n, v, _ in embeddings if ids[position : position + len(n)] == n), ([], []))
            if not vectors:
                tokens.append(token)
                weights.append(weight)
                position += 1
                continue
            if len(tokens) + len(vectors) > CHUNK:
                close()
            tokens += vectors
            weights += [weight] * len(vectors)
            position += len(name)
    if tokens or not chunks:
        close()
    return chunks


def _chunk_tensors(
    tokenizer: Any, chunk: tuple[list[int], list[float]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk as the encoder reads it (BOS, tokens, EOS, the tokenizer's padding) and its per-token weights."""
    tokens, weights = chunk
    ids = [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id]
    ids += [tokenizer.pad_token_id] * (CHUNK + 2 - len(ids))
    scale = torch.tensor([1.0, *weights, 1.0] + [1.0] * (CHUNK + 2 - len(weights) - 2), device=device)
    return torch.tensor([ids], device=device), scale


def _emphasis(hidden: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """A1111's "Original" emphasis (sd_emphasis.EmphasisOriginal) over a batch of chunks: weight each token's
    vector, then restore the batch's mean, one mean for the whole batch as A1111 encodes a prompt's scheduled texts
    together (issue 30.4). Without any weight but 1 the chunks are left as they are (A1111's ratio is then 1)."""
    if not bool((scale != 1.0).any()):
        return hidden
    mean = hidden.mean()
    hidden = hidden * scale[..., None].to(hidden.dtype)
    return hidden * (mean / hidden.mean())


def _batch_tensors(
    tokenizer: Any, chunks: list[tuple[list[int], list[float]]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_chunk_tensors(tokenizer, chunk, device) for chunk in chunks]
    return torch.cat([ids for ids, _ in pairs]), torch.stack([scale for _, scale in pairs])


def _encode(
    pipe: Any, chunks: list[tuple[list[int], list[float]]], clip_skip: int, device: torch.device
) -> torch.Tensor:
    """One chunk of each text, encoded as one batch ([texts, 77, dim]), as A1111's process_tokens."""
    encoder = pipe.text_encoder
    input_ids, scale = _batch_tensors(pipe.tokenizer, chunks, device)
    if clip_skip > 1:
        output = encoder(input_ids, output_hidden_states=True)
        # transformers >= 5.6 flattened CLIPTextModel (no `.text_model`), which also breaks diffusers' clip_skip
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
        hidden = final_norm(output.hidden_states[-clip_skip])
    else:
        hidden = encoder(input_ids)[0]
    return _emphasis(hidden, scale)


def _aligned(pipe: Any, texts: list[str]) -> list[list[tuple[list[int], list[float]]]]:
    """Each text's chunks, by chunk index, every text padded with empty chunks to the longest (A1111's forward)."""
    parts = [_chunks(pipe, text) for text in texts]
    count = max(len(chunks) for chunks in parts)
    return [[chunks[index] if index < len(chunks) else ([], []) for chunks in parts] for index in range(count)]


@torch.no_grad()
def sd1_schedule(pipe: Any, texts: list[str], clip_skip: int) -> list[torch.Tensor]:
    """The conditioning of each of one prompt's scheduled texts, [1, 77 x chunks, dim] each, encoded together as A1111
    encodes them (one batch per chunk index, shorter texts padded with empty chunks, one emphasis mean per batch)."""
    first = next(pipe.unet.parameters())
    encoded = torch.cat([_encode(pipe, batch, clip_skip, first.device) for batch in _aligned(pipe, texts)], dim=1)
    return [row[None].to(first.dtype) for row in encoded]


@torch.no_grad()
def sdxl_schedule(
    pipe: Any, texts: list[str], clip_skip: int, clip_l_skip: bool = False, *, negative: bool = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each of one prompt's scheduled texts as SDXL conditioning ([1, 77 x chunks, L + G width], pooled [1, G
    projection]), encoded together as A1111 does (per chunk index one batch through each encoder, each weighted and
    mean-restored over the batch; shorter texts padded with empty chunks). `negative`: all zeros when every text is
    empty (sgm's force_zero_embeddings for an empty negative prompt)."""
    first = next(pipe.unet.parameters())
    device = first.device
    batches = _aligned(pipe, texts)
    hidden: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for batch in batches:
        ids_l, scale = _batch_tensors(pipe.tokenizer, batch, device)
        ids_g, _ = _batch_tensors(pipe.tokenizer_2, batch, device)
        out_l = pipe.text_encoder(ids_l, output_hidden_states=True)
        out_g = pipe.text_encoder_2(ids_g, output_hidden_states=True)
        # A1111's sgm config reads CLIP-L's layer 11 of 12 (the penultimate); only sdxl_clip_l_skip lets clip skip in
        hidden_l = out_l.hidden_states[-clip_skip if clip_l_skip else -2]
        if pooled is None:
            pooled = out_g.text_embeds
        hidden.append(torch.cat([_emphasis(hidden_l, scale), _emphasis(out_g.hidden_states[-2], scale)], dim=-1))
    cond, vector = torch.cat(hidden, dim=1).to(first.dtype), pooled.to(first.dtype)  # type: ignore[union-attr]
    if negative and all(text == "" for text in texts):
        cond, vector = torch.zeros_like(cond), torch.zeros_like(vector)
    return [(cond[row][None], vector[row][None]) for row in range(len(texts))]


def sdxl_embedding(
    pipe: Any, text: str, clip_skip: int, clip_l_skip: bool = False, *, zero: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt's SDXL conditioning: ([1, 77 x chunks, L + G width], pooled [1, G projection]), as A1111 makes it.
    `zero`: the all-zero conditioning A1111 gives an empty negative prompt."""
    return sdxl_schedule(pipe, [text], clip_skip, clip_l_skip, negative=zero)[0]
