"""SDXL end to end on a tiny random-weight SDXL built at test time in the single-file layout users upload: written,
identified, loaded through the shipped config folder, and run for txt2img, img2img and inpainting with A1111's
conditioning (both text encoders, pooled text from the first chunk, size conditioning) and a kohya SDXL LoRA."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import call_command
from PIL import Image, ImageDraw

from inferences.engine.devtools import testing
from inferences.engine.models.loading import load_model
from inferences.engine.request.identify import SDXL_TINY, identify, read_header
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile
from inferences.engine.sampling import ksampling
from inferences.engine.sampling.conditioning import sdxl_embedding

from .conftest import model_file, png_b64, red_disc, txt2img


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelFile]:
    folder = tmp_path_factory.mktemp("sdxl")
    checkpoint = folder / "tiny-xl.safetensors"
    call_command("make_tiny_checkpoint", str(checkpoint), "--arch", "sdxl", stdout=io.StringIO())
    lora = testing.write_tiny_lora(folder / "xl-ink.safetensors", arch="sdxl")
    return {"checkpoint": model_file(checkpoint), "lora": model_file(lora)}


@pytest.fixture
def files(sdxl) -> JobFiles:
    return JobFiles(checkpoint=sdxl["checkpoint"], loras=(sdxl["lora"],))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def unet_conditioning(engine, files, monkeypatch, task="txt2img", **payload) -> list[ksampling.TextCond]:
    """What the UNet was conditioned on at each call of one job."""
    seen: list[ksampling.TextCond] = []
    original = ksampling._UNetEps.forward

    def spy(self, x, t, cond):
        seen.append(cond)
        return original(self, x, t, cond)

    monkeypatch.setattr(ksampling._UNetEps, "forward", spy)
    result = engine.run(task, txt2img(**payload) if task == "txt2img" else payload, files)
    assert result.ignored == []
    return seen


def test_the_single_file_has_sdxls_layout_and_loads_back_bit_exact(sdxl):
    path = sdxl["checkpoint"].path
    assert identify(path) == SDXL_TINY
    names = read_header(path)
    assert any(name.startswith("conditioner.embedders.0.transformer.text_model.") for name in names)
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in names  # OpenCLIP's fused qkv
    assert "model.diffusion_model.label_emb.0.0.weight" in names  # the size/pooled-text embedding
    model = load_model(sdxl["checkpoint"], None, EngineOptions())
    reference = testing.build_tiny_pipeline(0, "sdxl")
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        loaded, built = getattr(model.base, part).state_dict(), getattr(reference, part).state_dict()
        assert loaded.keys() == built.keys(), part
        assert all(torch.equal(loaded[key], built[key]) for key in built), part


def test_txt2img_img2img_and_inpainting(engine, files):
    result = engine.run("txt2img", txt2img(sampler_name="DPM++ 2M", scheduler="Karras", steps=4), files)
    assert result.ignored == []
    image = Image.open(io.BytesIO(result.images[0]))
    assert image.size == (64, 64)
    parameters = image.text["parameters"]
    assert parameters.startswith("a photo of a cat\nNegative prompt: blurry\nSteps: 4, Sampler: DPM++ 2M")
    assert "Schedule type: Karras" in parameters and "Model: tiny-xl" in parameters

    source = red_disc((64, 64))
    img2img = {**txt2img(steps=4, denoising_strength=0.6), "init_images": [png_b64(source)]}
    assert engine.run("img2img", img2img, files).ignored == []

    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    for fill in (0, 1, 2, 3):
        inpaint = engine.run(
            "img2img", {**img2img, "mask": png_b64(mask), "mask_blur": 0, "inpainting_fill": fill}, files
        )
        out, original = pixels(inpaint.images[0]), np.asarray(source).astype(int)
        assert inpaint.ignored == []
        assert np.array_equal(out[:, 33:], original[:, 33:])  # outside the mask: the original, pixel for pixel
        assert np.abs(out[:, :30] - original[:, :30]).max() > 20


def test_a_plain_prompt_is_conditioned_as_diffusers_sdxl_encodes_it(engine, sdxl):
    """An independent reference: diffusers' own SDXL encode_prompt (penultimate layers of both encoders, G's pooled
    output, zeros for no negative prompt) gives the same tensors as A1111's encoding for a plain prompt."""
    model = load_model(sdxl["checkpoint"], None, EngineOptions())
    pipe = model.base
    with torch.inference_mode():
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            "a photo of a cat", device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=True,
            negative_prompt=None,
        )  # fmt: skip
        ours, ours_pooled = sdxl_embedding(pipe, "a photo of a cat", clip_skip=1)
        zeros, zeros_pooled = sdxl_embedding(pipe, "", clip_skip=1, zero=True)
    assert ours.shape == (1, 77, 96) and ours_pooled.shape == (1, 64)
    assert torch.allclose(ours, embeds, atol=1e-6) and torch.allclose(ours_pooled, pooled, atol=1e-6)
    assert torch.equal(zeros, negative) and torch.equal(zeros_pooled, negative_pooled)


def test_a1111s_sdxl_conditioning_emphasis_chunks_pooled_and_size(engine, files, monkeypatch, sdxl):
    long_prompt = " ".join(["cat"] * 80)  # 80 tokens: two chunks
    calls = unet_conditioning(
        engine, files, monkeypatch, prompt=long_prompt, negative_prompt="", width=80, height=64, steps=2,
        sampler_name="Euler",
    )  # fmt: skip
    # 154 tokens against 77: cond and uncond run as two calls, as A1111's do when their lengths differ
    assert [tuple(call.hidden.shape) for call in calls[:2]] == [(1, 154, 96), (1, 77, 96)]
    first = calls[0]
    # size conditioning as A1111 sends it: original (h, w), crop (0, 0), target (h, w)
    assert first.time_ids.tolist()[0] == [64, 80, 0, 0, 64, 80]
    model = load_model(sdxl["checkpoint"], None, EngineOptions())
    with torch.inference_mode():
        _, pooled_first_chunk = sdxl_embedding(model.base, " ".join(["cat"] * 75), clip_skip=1)
        weighted, weighted_pooled = sdxl_embedding(model.base, "a (photo:1.5) of a cat", clip_skip=1)
        plain, plain_pooled = sdxl_embedding(model.base, "a photo of a cat", clip_skip=1)
        broken, _ = sdxl_embedding(model.base, "a photo BREAK of a cat", clip_skip=1)
    positive, negative = calls[0], calls[1]
    assert torch.allclose(positive.pooled, pooled_first_chunk, atol=1e-6)  # pooled from the first chunk
    assert not negative.hidden.any() and not negative.pooled.any()  # an empty negative prompt is all zeros
    assert not torch.allclose(weighted, plain) and torch.equal(weighted_pooled, plain_pooled)  # pooled unweighted
    assert broken.shape[1] == 154


def test_clip_skip_reaches_sdxls_clip_l_only_with_sdxl_clip_l_skip(engine, files):
    def image(**overrides):
        return pixels(engine.run("txt2img", txt2img(steps=3, override_settings=overrides), files).images[0])

    plain = image()  # CLIP-L's penultimate layer, as A1111's SDXL reads it
    assert np.array_equal(image(CLIP_stop_at_last_layers=3), plain)  # A1111 ignores clip skip for SDXL by default
    # with sdxl_clip_l_skip, clip skip picks CLIP-L's layer: 2 is the default penultimate one, 1 the last one
    assert np.array_equal(image(CLIP_stop_at_last_layers=2, sdxl_clip_l_skip=True), plain)
    assert not np.array_equal(image(CLIP_stop_at_last_layers=1, sdxl_clip_l_skip=True), plain)


def test_an_sdxl_kohya_lora_changes_the_picture_and_comes_off_exactly(engine, files):
    plain = engine.run("txt2img", txt2img(steps=3), files)
    styled = engine.run("txt2img", txt2img(steps=3, prompt="a photo of a cat <lora:xl-ink:1>"), files)
    again = engine.run("txt2img", txt2img(steps=3), files)
    assert np.abs(pixels(styled.images[0]) - pixels(plain.images[0])).mean() > 1
    assert np.array_equal(pixels(again.images[0]), pixels(plain.images[0]))
    assert 'Lora hashes: "xl-ink: ' in Image.open(io.BytesIO(styled.images[0])).text["parameters"]


def test_a1111s_timestep_samplers_on_sdxl_get_its_conditioning_too(engine, files, monkeypatch):
    """UniPC (A1111's own, on the engine's loop) on SDXL: emphasis honoured, not dropped."""
    plain = pixels(engine.run("txt2img", txt2img(sampler_name="UniPC", prompt="a cat"), files).images[0])
    weighted = engine.run("txt2img", txt2img(sampler_name="UniPC", prompt="a (cat:1.6)"), files)
    assert weighted.ignored == []
    assert not np.array_equal(pixels(weighted.images[0]), plain)


def test_the_command_writes_an_sdxl_file(tmp_path: Path):
    out = tmp_path / "xl.safetensors"
    stdout = io.StringIO()
    call_command("make_tiny_checkpoint", str(out), "--arch", "sdxl", "--half", stdout=stdout)
    assert "Wrote" in stdout.getvalue() and identify(out) == SDXL_TINY
