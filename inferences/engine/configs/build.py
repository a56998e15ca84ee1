"""Regenerate the shipped config folders (JSON and tokenizer files, no weights) from code.

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/oc
    python -m inferences.engine.configs.build /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl

`from_single_file(path, config=<folder>)` reads these instead of reaching for the Hub. The CLIP BPE vocabulary comes
from open_clip's wheel (MIT), which ships OpenAI's merges file; the written vocab has CLIP's 49408 ids. The output is
deterministic, so a rerun shows no git diff. Tokenizer files are written once (sd15) and linked from the others.
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"

SD_SCHEDULER = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}

SD1_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}

CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}


def _pipeline_index(cls: str, **extra: Any) -> dict[str, Any]:
    index: dict[str, Any] = {
        "_class_name": cls,
        "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    index.update(extra)
    return index


SD1_INDEX = _pipeline_index(
    "StableDiffusionPipeline",
    safety_checker=[None, None],
    feature_extractor=[None, None],
    image_encoder=[None, None],
    requires_safety_checker=False,
)

# A real SD 1.x architecture at toy width: the same block types, attention and 8x latent factor, ~3 M parameters
# (the text encoder keeps CLIP's full vocabulary so the shipped tokenizer fits). `make_tiny_checkpoint` writes one.
TINY_UNET = {
    **SD1_UNET,
    "attention_head_dim": 8,
    "block_out_channels": [32, 64, 64],
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "layers_per_block": 1,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
TINY_VAE = {
    **SD_VAE,
    "block_out_channels": [8, 16, 16, 16],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}
TINY_CLIP = {
    **CLIP_L,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "projection_dim": 32,
}

SDXL_UNET = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}
SDXL_VAE = {**SD_VAE, "force_upcast": True, "sample_size": 1024, "scaling_factor": 0.13025}
SDXL_CLIP_G = {
    "architectures": ["CLIPTextModelWithProjection"],
    "model_type": "clip_text_model",
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "hidden_act": "gelu",
    "hidden_size": 1280,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 5120,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "projection_dim": 1280,
    "torch_dtype": "float32",
    "vocab_size": 49408,
}
SDXL_SCHEDULER = {
    **SD_SCHEDULER,
    "_class_name": "EulerDiscreteScheduler",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}
del SDXL_SCHEDULER["skip_prk_steps"]
# SDXL at toy width: the same block types (no attention in the first level, two transformer layers in the last),
# both text encoders (CLIP-L's hidden states and OpenCLIP-G's, concatenated, and G's pooled output) and the size
# conditioning ("text_time" embedding) of the real one. `make_tiny_checkpoint --arch sdxl` writes one.
TINY_SDXL_CLIP_L = {**TINY_CLIP}
TINY_L_WIDTH, TINY_G_WIDTH, TINY_TIME_DIM = 32, 64, 8
TINY_SDXL_CLIP_G = {
    **SDXL_CLIP_G,
    "hidden_size": TINY_G_WIDTH,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "projection_dim": TINY_G_WIDTH,
}
TINY_SDXL_UNET = {
    **SDXL_UNET,
    "addition_time_embed_dim": TINY_TIME_DIM,
    "attention_head_dim": [2, 4, 4],
    "block_out_channels": [32, 64, 64],
    "cross_attention_dim": TINY_L_WIDTH + TINY_G_WIDTH,
    "layers_per_block": 1,
    # pooled text (G's projection) + six size values of addition_time_embed_dim each
    "projection_class_embeddings_input_dim": TINY_G_WIDTH + 6 * TINY_TIME_DIM,
    "sample_size": 8,
    "transformer_layers_per_block": [1, 1, 2],
}
TINY_SDXL_VAE = {**TINY_VAE, "force_upcast": True, "scaling_factor": 0.13025}

SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "_diffusers_version": "0.42.1",
    "force_zeros_for_empty_prompt": True,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "image_encoder": [None, None],
    "feature_extractor": [None, None],
}


def bytes_to_unicode() -> list[str]:
    """CLIP's (GPT-2's) byte-to-printable-character table, in the order its vocabulary lists them."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def clip_vocab(bpe_gz: bytes) -> tuple[dict[str, int], list[str]]:
    lines = gzip.decompress(bpe_gz).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = bytes_to_unicode()
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(vocab)}, merges


def tokenizer_config(pad: str) -> dict[str, Any]:
    return {
        "add_prefix_space": False,
        "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True,
        "do_lower_case": True,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 77,
        "pad_token": pad,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": "<|endoftext|>",
    }


def _json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _link_tokenizer(folder: Path, pad: str) -> None:
    """Vocab and merges are 1.5 MB: the other folders link to sd15's copy."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        depth = len(folder.relative_to(HERE).parts)
        link.symlink_to(Path(*([".."] * depth), "sd15", "tokenizer", name))
    _json(folder / "tokenizer_config.json", tokenizer_config(pad))
    _json(folder / "special_tokens_map.json", special_tokens(pad))


def special_tokens(pad: str) -> dict[str, str]:
    return {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": pad,
        "unk_token": "<|endoftext|>",
    }


def build(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        vocab, merges = clip_vocab(archive.read(BPE_MEMBER))
    tokenizer = HERE / "sd15" / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    (tokenizer / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    _json(tokenizer / "tokenizer_config.json", tokenizer_config("<|endoftext|>"))
    _json(tokenizer / "special_tokens_map.json", special_tokens("<|endoftext|>"))
    write_configs()


# folder -> (pipeline index, scheduler, UNet, VAE, CLIP-L, OpenCLIP-G or None for SD 1.x)
FOLDERS: dict[str, tuple[dict[str, Any], ...]] = {
    "sd15": (SD1_INDEX, SD_SCHEDULER, SD1_UNET, SD_VAE, CLIP_L),
    "sd1-tiny": (SD1_INDEX, SD_SCHEDULER, TINY_UNET, TINY_VAE, TINY_CLIP),
    "sdxl": (SDXL_INDEX, SDXL_SCHEDULER, SDXL_UNET, SDXL_VAE, {**CLIP_L, "projection_dim": 768}, SDXL_CLIP_G),
    "sdxl-tiny": (SDXL_INDEX, SDXL_SCHEDULER, TINY_SDXL_UNET, TINY_SDXL_VAE, TINY_SDXL_CLIP_L, TINY_SDXL_CLIP_G),
}


def write_configs() -> None:
    """Every folder's JSON (the tokenizer vocabulary must exist in sd15/tokenizer: `build` writes it)."""
    for name, (index, scheduler, unet, vae, clip_l, *clip_g) in FOLDERS.items():
        folder = HERE / name
        _json(folder / "model_index.json", index)
        _json(folder / "unet" / "config.json", unet)
        _json(folder / "vae" / "config.json", vae)
        _json(folder / "text_encoder" / "config.json", clip_l)
        _json(folder / "scheduler" / "scheduler_config.json", scheduler)
        if name != "sd15":  # sd15 holds the vocabulary itself
            _link_tokenizer(folder / "tokenizer", "<|endoftext|>")
        if clip_g:  # SDXL's second text encoder; OpenCLIP pads with "!"
            _json(folder / "text_encoder_2" / "config.json", clip_g[0])
            _link_tokenizer(folder / "tokenizer_2", "!")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    build(Path(sys.argv[1]))
