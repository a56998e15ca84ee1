"""Write a diffusers SD 1.x or SDXL pipeline as a single-file checkpoint in the original ("LDM") layout users upload.

diffusers only converts LDM → diffusers; this is the other direction, for `make_tiny_checkpoint`, tests and the GPU
benchmark. It follows the key mapping of diffusers' own conversion (shared ml-notes.md, appendix), generalised over
the number of blocks and layers, so files it writes load back bit-exact through `from_single_file`.
"""

from __future__ import annotations

from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_CLIP_G_PREFIX = "conditioner.embedders.1.model."

RESNET_RENAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}


def _rename_resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{RESNET_RENAMES.get(head, head)}.{tail}" if tail else RESNET_RENAMES.get(head, head)


def unet_to_ldm(unet: Any) -> dict[str, torch.Tensor]:
    config = unet.config
    per_block = config.layers_per_block + 1
    has_attention = ["CrossAttn" in kind for kind in config.up_block_types]
    return {UNET_PREFIX + _unet_name(key, per_block, has_attention): value for key, value in unet.state_dict().items()}


def _unet_name(key: str, per_block: int, has_attention: list[bool]) -> str:
    """The LDM name of a diffusers UNet (or ControlNet encoder) key."""
    parts = key.split(".")
    if parts[0] == "time_embedding":
        return {"linear_1": "time_embed.0", "linear_2": "time_embed.2"}[parts[1]] + "." + ".".join(parts[2:])
    if parts[0] == "add_embedding":  # SDXL's size and pooled-text embedding
        return {"linear_1": "label_emb.0.0", "linear_2": "label_emb.0.2"}[parts[1]] + "." + ".".join(parts[2:])
    if parts[0] == "conv_in":
        return "input_blocks.0.0." + ".".join(parts[1:])
    if parts[0] == "conv_norm_out":
        return "out.0." + ".".join(parts[1:])
    if parts[0] == "conv_out":
        return "out.2." + ".".join(parts[1:])
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.*
            return f"input_blocks.{(block + 1) * per_block}.0.op." + ".".join(parts[5:])
        index = block * per_block + int(parts[3]) + 1
        rest = ".".join(parts[4:])
        return (
            f"input_blocks.{index}.0.{_rename_resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
        )
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # up_blocks.b.upsamplers.0.conv.*
            slot = 2 if has_attention[block] else 1
            return f"output_blocks.{block * per_block + per_block - 1}.{slot}." + ".".join(parts[4:])
        index = block * per_block + int(parts[3])
        rest = ".".join(parts[4:])
        return (
            f"output_blocks.{index}.0.{_rename_resnet(rest)}"
            if kind == "resnets"
            else f"output_blocks.{index}.1.{rest}"
        )
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{0 if index == 0 else 2}.{_rename_resnet(rest)}"
    raise ValueError(f"no LDM name for UNet key {key}")


def controlnet_to_ldm(controlnet: Any, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    """A diffusers ControlNetModel in the original layout (lllyasviel's `control_model.*` releases): the UNet
    encoder's names, plus `input_hint_block` (the hint encoder), `zero_convs` and `middle_block_out` (the inverse
    of diffusers' convert_controlnet_checkpoint)."""
    per_block = controlnet.config.layers_per_block + 1
    out: dict[str, torch.Tensor] = {}
    for key, value in controlnet.state_dict().items():
        parts = key.split(".")
        if parts[0] == "controlnet_cond_embedding":
            blocks = len(controlnet.controlnet_cond_embedding.blocks)
            slot = {"conv_in": 0, "conv_out": 2 * (blocks + 1)}.get(parts[1])
            index = slot if slot is not None else 2 * (int(parts[2]) + 1)
            name = f"input_hint_block.{index}.{parts[-1]}"
        elif parts[0] == "controlnet_down_blocks":
            name = f"zero_convs.{parts[1]}.0.{parts[2]}"
        elif parts[0] == "controlnet_mid_block":
            name = f"middle_block_out.0.{parts[1]}"
        else:
            name = _unet_name(key, per_block, [])
        out[prefix + name] = value
    return out


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def vae_to_ldm(vae: Any, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        parts = key.split(".")
        side = parts[0]
        new = key
        if side in ("encoder", "decoder"):
            if parts[1] in ("down_blocks", "up_blocks"):
                level = int(parts[2])
                name = "down" if side == "encoder" else "up"
                if side == "decoder":
                    level = levels - 1 - level
                if parts[3] == "resnets":
                    new = f"{side}.{name}.{level}.block.{parts[4]}." + _vae_resnet(".".join(parts[5:]))
                else:  # downsamplers.0.conv / upsamplers.0.conv
                    new = f"{side}.{name}.{level}.{'downsample' if side == 'encoder' else 'upsample'}." + ".".join(
                        parts[5:]
                    )
            elif parts[1] == "mid_block":
                if parts[2] == "resnets":
                    new = f"{side}.mid.block_{int(parts[3]) + 1}." + _vae_resnet(".".join(parts[4:]))
                else:
                    rest = ".".join(parts[4:])
                    for old, ldm in attention.items():
                        if rest.startswith(old + "."):
                            new = f"{side}.mid.attn_1.{ldm}.{rest[len(old) + 1 :]}"
                            break
                    if value.ndim == 2:  # LDM's mid attention is made of 1x1 convolutions
                        value = value[:, :, None, None]
            elif parts[1] == "conv_norm_out":
                new = f"{side}.norm_out." + ".".join(parts[2:])
        out[prefix + new] = value
    return out


def clip_to_ldm(text_encoder: Any, prefix: str = CLIP_PREFIX) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in text_encoder.state_dict().items():
        # transformers >= 5.6 flattened CLIPTextModel; checkpoints keep the `text_model.` level
        name = key if key.startswith("text_model.") else "text_model." + key
        out[prefix + name] = value
    positions = text_encoder.config.max_position_embeddings
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


OPEN_CLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_to_ldm(text_encoder: Any, prefix: str = SDXL_CLIP_G_PREFIX) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection in OpenCLIP's layout, as SDXL files carry its second text encoder: fused
    q/k/v (`attn.in_proj_*`), `resblocks`, `ln_final` and a [width, dim] `text_projection` (the inverse of
    diffusers' convert_open_clip_checkpoint)."""
    state = {key.removeprefix("text_model."): value for key, value in text_encoder.state_dict().items()}
    out: dict[str, torch.Tensor] = {
        prefix + "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        prefix + "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        prefix + "ln_final.weight": state.pop("final_layer_norm.weight"),
        prefix + "ln_final.bias": state.pop("final_layer_norm.bias"),
        prefix + "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    for layer in range(text_encoder.config.num_hidden_layers):
        source, target = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state.pop(f"{source}self_attn.{name}_proj.{kind}") for name in ("q", "k", "v")]
            )
            for old, new in OPEN_CLIP_LAYER.items():
                out[f"{target}{new}.{kind}"] = state.pop(f"{source}{old}.{kind}")
    if state:
        raise ValueError(f"no OpenCLIP names for text-encoder keys {sorted(state)[:5]}")
    return out


def pipeline_to_ldm(pipe: Any, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae)}
    if getattr(pipe, "text_encoder_2", None) is not None:  # SDXL
        state.update(clip_to_ldm(pipe.text_encoder, SDXL_CLIP_L_PREFIX))
        state.update(open_clip_to_ldm(pipe.text_encoder_2))
    else:
        state.update(clip_to_ldm(pipe.text_encoder))
    return {
        key: (value.to(dtype) if dtype is not None and value.is_floating_point() else value).contiguous()
        for key, value in state.items()
    }
