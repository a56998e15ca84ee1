"""Which config folder a checkpoint gets, from its header alone; and that each shipped folder fits its layout.

The full-size SD 1.5 file here has the exact key layout and shapes of a real one (written from the shipped config
by the project's own LDM writer) but its data region is a sparse hole: identifying it reads only the header, and
nothing 4 GB is ever written or run.
"""

import json
import struct
from pathlib import Path

import pytest

from inferences.engine.configs_path import config_folder
from inferences.engine.errors import EngineError
from inferences.engine.request.identify import SD1_TINY, SD15, SDXL, identify

DTYPE_BYTES = {"F32": 4, "F16": 2, "I64": 8}


def write_header_only(path: Path, shapes: dict[str, list[int]], dtype: str = "F16") -> Path:
    """A valid safetensors file with these tensors; the data are zeros held in a sparse hole."""
    header: dict[str, object] = {}
    offset = 0
    for name, shape in shapes.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        handle.truncate(8 + len(encoded) + offset)
    return path


def meta_pipeline(name: str) -> dict[str, object]:
    """The shipped config folder's modules, built on the meta device (shapes only, no memory)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = config_folder(name)
    with init_empty_weights():
        modules: dict[str, object] = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        }
        if (folder / "text_encoder_2").exists():
            modules["text_encoder_2"] = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            )
    return modules


@pytest.fixture(scope="module")
def sd15_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    from inferences.engine.devtools.ldm import clip_to_ldm, unet_to_ldm, vae_to_ldm

    modules = meta_pipeline("sd15")
    state = {**unet_to_ldm(modules["unet"]), **vae_to_ldm(modules["vae"]), **clip_to_ldm(modules["text_encoder"])}
    shapes = {name: list(tensor.shape) for name, tensor in state.items()}
    path = write_header_only(tmp_path_factory.mktemp("sd15") / "v1-5-pruned.safetensors", shapes)
    return path, modules


def test_a_full_size_sd15_file_is_identified_and_its_folder_fits(sd15_file: tuple[Path, dict[str, object]]) -> None:
    import torch
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    from inferences.engine.request.identify import read_header

    path, modules = sd15_file
    assert path.stat().st_size > 2_000_000_000  # the real size of an fp16 SD 1.5 file...
    assert path.stat().st_blocks * 512 < 50_000_000  # ...held in a sparse hole
    shapes = read_header(path)
    assert len(shapes) == 1131  # 686 UNet + 248 VAE + 197 CLIP keys, as in the real file
    assert identify(path) == SD15

    # diffusers' own conversion maps every tensor of the file onto the shipped config's modules, shape for shape.
    state = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    converted = {
        "unet": convert_ldm_unet_checkpoint(state, modules["unet"].config),  # type: ignore[attr-defined]
        "vae": convert_ldm_vae_checkpoint(state, modules["vae"].config),  # type: ignore[attr-defined]
        "text_encoder": convert_ldm_clip_checkpoint(state),
    }
    for part, mapped in converted.items():
        expected = {name: list(tensor.shape) for name, tensor in modules[part].state_dict().items()}  # type: ignore[attr-defined]
        got = {name.removeprefix("text_model."): list(tensor.shape) for name, tensor in mapped.items()}
        got.pop("embeddings.position_ids", None)
        assert got == expected, part


def test_parameter_counts_of_the_shipped_full_size_configs() -> None:
    def count(module: object) -> int:
        return sum(parameter.numel() for parameter in module.parameters())  # type: ignore[attr-defined]

    sd15 = meta_pipeline("sd15")
    assert count(sd15["unet"]) == 859_520_964
    assert count(sd15["vae"]) == 83_653_863
    assert count(sd15["text_encoder"]) == 123_060_480
    sdxl = meta_pipeline("sdxl")
    assert count(sdxl["unet"]) == 2_567_463_684
    assert count(sdxl["vae"]) == 83_653_863
    assert count(sdxl["text_encoder_2"]) == 694_659_840


def test_the_tiny_checkpoint_is_identified(models: dict) -> None:
    assert identify(models["checkpoint"].path) == SD1_TINY
    assert identify(models["half"].path) == SD1_TINY


def test_an_sdxl_layout_is_identified(tmp_path: Path) -> None:
    shapes = {
        "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": [640, 2048],
        "conditioner.embedders.1.model.token_embedding.weight": [49408, 1280],
    }
    assert identify(write_header_only(tmp_path / "sdxl.safetensors", shapes)) == SDXL


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": [4, 320]}, "this is a LoRA"),
        ({"encoder.down.0.block.0.conv1.weight": [128, 128, 3, 3]}, "this is a VAE"),
        ({"emb_params": [2, 768]}, "textual-inversion embedding"),
        ({"model.diffusion_model.input_blocks.0.0.weight": [320, 9, 3, 3]}, "inpainting checkpoints"),
        (
            {
                "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
                "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
            },
            "Stable Diffusion 2.x checkpoints are not supported",
        ),
        ({"model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3]}, "no text encoder weights"),
        ({"something.else": [3]}, "not a Stable Diffusion checkpoint"),
    ],
)
def test_files_the_engine_cannot_run_are_named(tmp_path: Path, shapes: dict[str, list[int]], message: str) -> None:
    with pytest.raises(EngineError, match=message):
        identify(write_header_only(tmp_path / "upload.safetensors", shapes))


@pytest.mark.parametrize(
    "content", [b"", b"\x80\x02pickle", struct.pack("<Q", 1 << 40) + b"{}", struct.pack("<Q", 2) + b"[]"]
)
def test_files_that_are_not_safetensors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(EngineError, match="is not a safetensors file"):
        identify(path)
