"""The engine on real (tiny, random-weight) SD 1.x pipelines, loaded from single files as user uploads are."""

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inferences.engine.errors import Cancelled, EngineError
from inferences.engine.request.options import EngineOptions, JobFiles, ModelFile, NoProgress
from inferences.engine.request.samplers import SAMPLERS

from .conftest import png_b64, red_disc, txt2img

SAMPLER_NAMES = list(SAMPLERS)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def run(engine, files: JobFiles, task: str = "txt2img", **payload: object):
    base = txt2img(**payload) if task == "txt2img" else payload
    return engine.run(task, base, files)


class Steps(NoProgress):
    def __init__(self, stop_after: int | None = None) -> None:
        self.seen: list[tuple[int, int]] = []
        self.stop_after = stop_after

    def step(self, done: int, total: int) -> None:
        self.seen.append((done, total))

    def cancelled(self) -> bool:
        return self.stop_after is not None and len(self.seen) >= self.stop_after


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_name_generates(engine, files: JobFiles, sampler: str) -> None:
    result = run(engine, files, sampler_name=sampler, steps=4, width=64, height=96)
    [png] = result.images
    image = Image.open(io.BytesIO(png))
    assert (image.size, image.mode) == ((64, 96), "RGB")
    assert f"Sampler: {sampler}," in image.text["parameters"]
    assert pixels(png).std() > 0  # not a blank image


def test_the_same_seed_gives_the_same_image_and_another_seed_another(engine, files: JobFiles) -> None:
    first, again, other = (run(engine, files, seed=seed).images[0] for seed in (42, 42, 43))
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).max() > 10


def test_a_random_seed_is_reported_and_reproduces(engine, files: JobFiles) -> None:
    result = run(engine, files, seed=-1)
    used = result.info["seed"]
    assert 0 <= used < 2**32 and f"Seed: {used}," in result.info["infotexts"][0]
    assert np.array_equal(pixels(run(engine, files, seed=used).images[0]), pixels(result.images[0]))


def test_batches_and_iterations_give_seed_plus_k(engine, files: JobFiles) -> None:
    result = run(engine, files, seed=100, batch_size=2, n_iter=3, sampler_name="DPM++ 2M")
    assert len(result.images) == 6 and result.info["all_seeds"] == [100, 101, 102, 103, 104, 105]
    assert len(result.info["infotexts"]) == 6 and "Seed: 103," in result.info["infotexts"][3]
    # image k of a batch is the image a single run with seed + k gives (within float noise of batching)
    alone = pixels(run(engine, files, seed=103, sampler_name="DPM++ 2M").images[0])
    assert np.abs(pixels(result.images[3]) - alone).max() <= 2


def test_png_carries_a1111_parameters_and_the_info_json(engine, files: JobFiles, models) -> None:
    result = run(
        engine, files, prompt="a cat", negative_prompt="dog", seed=7, steps=3, cfg_scale=6.5, width=64, height=64
    )
    text = Image.open(io.BytesIO(result.images[0])).text["parameters"]
    checkpoint = models["checkpoint"]
    assert text == (
        "a cat\nNegative prompt: dog\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 7, "
        f"Size: 64x64, Model hash: {checkpoint.sha256[:10]}, Model: tiny-sd1, RNG: CPU, Version: esd-server"
    )
    document = result.document()
    info = json.loads(document["info"])
    assert info["infotexts"] == [text]
    assert info["sd_model_hash"] == checkpoint.sha256[:10] and info["all_prompts"] == ["a cat"]
    assert document["parameters"]["prompt"] == "a cat" and document["ignored_parameters"] == []
    assert set(result.worker_json()) == {"images", "parameters", "info", "ignored_parameters"}


def test_lora_changes_the_image_and_unloading_restores_the_base(engine, models) -> None:
    files = JobFiles(checkpoint=models["checkpoint"], loras=(models["lora"],))
    base = pixels(run(engine, files, prompt="a cat").images[0])
    full = run(engine, files, prompt="a cat <lora:watercolor:1>")
    half = pixels(run(engine, files, prompt="a cat <lora:watercolor:0.5>").images[0])
    after = pixels(run(engine, files, prompt="a cat").images[0])
    assert np.abs(pixels(full.images[0]) - base).max() > 5
    assert 0 < np.abs(half - base).mean() < np.abs(pixels(full.images[0]) - base).mean()
    assert np.array_equal(after, base)  # adapters came off exactly; the base model was not reloaded
    assert f'Lora hashes: "watercolor: {models["lora"].sha256[:10]}"' in full.info["infotexts"][0]
    assert full.timings["model_cache_hit"] == 1.0


def test_a_lora_the_job_lacks_is_a_clear_failure(engine, files: JobFiles) -> None:
    with pytest.raises(EngineError, match="<lora:missing> names 'missing', but the job's Lora models are: "):
        run(engine, files, prompt="a cat <lora:missing:1>")


def test_an_embedding_named_in_the_prompt_is_used_and_removed_after(engine, models) -> None:
    files = JobFiles(checkpoint=models["checkpoint"], embeddings=(models["embedding"],))
    base = pixels(run(engine, files, prompt="a cat").images[0])
    styled = pixels(run(engine, files, prompt="a cat, style").images[0])
    negative = pixels(run(engine, files, prompt="a cat", negative_prompt="style").images[0])
    assert np.abs(styled - base).max() > 5 and np.abs(negative - base).max() > 5
    assert np.array_equal(pixels(run(engine, files, prompt="a cat").images[0]), base)
    # by its name's token ids, as A1111: case and the word's neighbours do not matter (issue 30.6)
    assert np.array_equal(pixels(run(engine, files, prompt="a cat,STYLE").images[0]), styled)


def test_vae_from_the_job_or_by_name_and_none(engine, models) -> None:
    plain = JobFiles(checkpoint=models["checkpoint"])
    with_vae = JobFiles(checkpoint=models["checkpoint"], vaes=(models["vae"],))
    base = pixels(run(engine, plain).images[0])
    vae = run(engine, with_vae)
    assert np.abs(pixels(vae.images[0]) - base).max() > 10
    assert vae.info["sd_vae_name"] == "blue-vae" and "VAE: blue-vae" in vae.info["infotexts"][0]
    named = run(engine, with_vae, override_settings={"sd_vae": "blue-vae.safetensors"})
    assert np.array_equal(pixels(named.images[0]), pixels(vae.images[0]))
    own = run(engine, with_vae, override_settings={"sd_vae": "None"})
    assert np.array_equal(pixels(own.images[0]), base)
    with pytest.raises(EngineError, match="has no VAE model of that name"):
        run(engine, with_vae, override_settings={"sd_vae": "other.safetensors"})


def test_clip_skip_emphasis_and_long_prompts_change_the_conditioning(engine, files: JobFiles) -> None:
    base = pixels(run(engine, files, prompt="a cat").images[0])
    skip = run(engine, files, prompt="a cat", override_settings={"CLIP_stop_at_last_layers": 2})
    assert np.abs(pixels(skip.images[0]) - base).max() > 5 and "Clip skip: 2" in skip.info["infotexts"][0]
    assert np.abs(pixels(run(engine, files, prompt="a (cat:1.5)").images[0]) - base).max() > 5
    # A1111 keeps words past CLIP's 75 tokens in a second chunk; diffusers would drop them.
    long = "a cat, " * 40
    assert (
        np.abs(
            pixels(run(engine, files, prompt=long + "red").images[0])
            - pixels(run(engine, files, prompt=long + "blue").images[0])
        ).max()
        > 0
    )


def test_img2img_and_its_resize_modes(engine, files: JobFiles) -> None:
    source = png_b64(red_disc((96, 80)))
    for mode in (0, 1, 2, 3):
        result = run(
            engine,
            files,
            "img2img",
            prompt="x",
            init_images=[source],
            denoising_strength=0.6,
            steps=4,
            width=64,
            height=64,
            resize_mode=mode,
            seed=3,
            batch_size=2,
        )
        assert [Image.open(io.BytesIO(png)).size for png in result.images] == [(64, 64), (64, 64)]
        assert "Denoising strength: 0.6" in result.info["infotexts"][0]
    weak = pixels(
        run(
            engine,
            files,
            "img2img",
            prompt="x",
            init_images=[source],
            denoising_strength=0.05,
            steps=20,
            width=64,
            height=64,
            seed=3,
        ).images[0]
    )
    original = np.asarray(red_disc((96, 80)).resize((64, 64), Image.Resampling.LANCZOS)).astype(int)
    strong = pixels(
        run(
            engine,
            files,
            "img2img",
            prompt="x",
            init_images=[source],
            denoising_strength=1.0,
            steps=4,
            width=64,
            height=64,
            seed=3,
        ).images[0]
    )
    assert np.abs(weak - original).mean() < np.abs(strong - original).mean()


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_inpainting_repaints_only_the_mask(engine, files: JobFiles, fill: int) -> None:
    source = red_disc((64, 64))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    result = run(
        engine,
        files,
        "img2img",
        prompt="x",
        init_images=[png_b64(source)],
        mask=png_b64(mask),
        mask_blur=0,
        inpainting_fill=fill,
        denoising_strength=0.9,
        steps=4,
        width=64,
        height=64,
        seed=5,
    )
    out, original = pixels(result.images[0]), np.asarray(source).astype(int)
    assert np.array_equal(out[:, 33:], original[:, 33:])  # outside the mask: the original, pixel for pixel
    assert np.abs(out[:, :30] - original[:, :30]).max() > 20
    assert result.ignored == []  # k-diffusion's sampler with A1111's latent blending: nothing stood in for
    inverted = run(
        engine,
        files,
        "img2img",
        prompt="x",
        init_images=[png_b64(source)],
        mask=png_b64(mask),
        mask_blur=0,
        inpainting_mask_invert=1,
        denoising_strength=0.9,
        steps=4,
        width=64,
        height=64,
        seed=5,
    )
    assert np.array_equal(pixels(inverted.images[0])[:, :31], original[:, :31])


def test_progress_is_reported_and_cancel_stops_at_the_next_step(engine, files: JobFiles) -> None:
    steps = Steps()
    engine.run("txt2img", txt2img(steps=4, n_iter=2, sampler_name="Euler"), files, steps)
    assert steps.seen == [(done, 8) for done in range(1, 9)]
    stopper = Steps(stop_after=2)
    with pytest.raises(Cancelled):
        engine.run("txt2img", txt2img(steps=10, sampler_name="Euler"), files, stopper)
    assert len(stopper.seen) == 2
    assert len(run(engine, files).images) == 1  # the pipeline is fine afterwards


def test_fp16_checkpoint_loads_as_fp32_on_cpu(engine, models) -> None:
    result = run(engine, JobFiles(checkpoint=models["half"]), seed=9)
    full = run(engine, JobFiles(checkpoint=models["checkpoint"]), seed=9)
    assert np.abs(pixels(result.images[0]) - pixels(full.images[0])).max() <= 8  # fp16 rounding of the weights only


def test_a_model_the_engine_cannot_load_fails_clearly(engine, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.safetensors"
    bogus.write_bytes(b"\x00" * 16)
    with pytest.raises(EngineError, match=r"notes\.safetensors is not a safetensors file"):
        run(engine, JobFiles(checkpoint=ModelFile(bogus, bogus.name, "00" * 32)))
    with pytest.raises(EngineError, match="needs a Stable-diffusion model"):
        run(engine, JobFiles())


def test_pipeline_cache_hits_and_evicts_within_its_budget(models, u2net_home: Path) -> None:
    from inferences.engine.runner import Engine

    small = Engine(EngineOptions(u2net_home=u2net_home, cache_bytes=1))  # room for one model at a time
    first = JobFiles(checkpoint=models["checkpoint"])
    other = JobFiles(checkpoint=models["other"])
    cold = run(small, first)
    warm = run(small, first)
    assert (cold.timings["model_cache_hit"], warm.timings["model_cache_hit"]) == (0.0, 1.0)
    assert warm.timings["model_seconds"] < cold.timings["model_seconds"] / 100
    run(small, other)
    assert small.pipelines.evictions == 1 and len(small.pipelines) == 1
    assert run(small, first).timings["model_cache_hit"] == 0.0  # it was evicted, so it is loaded again

    roomy = Engine(EngineOptions(u2net_home=u2net_home, cache_bytes=1024**3))
    for job in (first, other, first, other):
        run(roomy, job)
    assert (roomy.pipelines.misses, roomy.pipelines.hits, roomy.pipelines.evictions) == (2, 2, 0)
    # txt2img and img2img share the loaded modules: no second load
    run(roomy, first, "img2img", prompt="x", init_images=[png_b64(red_disc())], width=64, height=64, steps=2)
    assert roomy.pipelines.misses == 2


def test_background_removal_keeps_alpha_and_returns_masks(engine) -> None:
    source = red_disc((96, 80))
    result = engine.run("rembg", {"input_image": png_b64(source), "model": "u2netp"}, JobFiles())
    image = Image.open(io.BytesIO(result.images[0]))
    assert (image.mode, image.size) == ("RGBA", (96, 80))
    alpha = np.asarray(image)[:, :, 3]
    assert alpha[40, 48] > 200 and alpha[2, 2] < 30  # the red disc is kept, the blue background is cut
    mask = engine.run("rembg", {"input_image": png_b64(source), "model": "u2netp", "return_mask": True}, JobFiles())
    assert Image.open(io.BytesIO(mask.images[0])).mode == "L"
    assert set(result.worker_json()) == {"image"}


def test_a_background_removal_model_that_is_not_installed_is_a_clear_failure(engine, u2net_home: Path) -> None:
    with pytest.raises(
        EngineError,
        match=f"u2net_human_seg is not installed on this worker: put u2net_human_seg.onnx in U2NET_HOME \\({u2net_home}\\)",
    ):
        engine.run("rembg", {"input_image": png_b64(red_disc()), "model": "u2net_human_seg"}, JobFiles())
    assert not (u2net_home / "models").exists() and sorted(p.name for p in u2net_home.iterdir()) == ["u2netp.onnx"]


def test_the_real_u2netp_from_setup_cuts_out_the_subject(engine) -> None:
    """`make` unpacks rembg's real u2netp (md5-checked) into U2NET_HOME; it must be there and work offline."""
    from django.conf import settings

    from inferences.engine.features.install_u2netp import MD5
    from inferences.engine.runner import Engine

    installed = Path(settings.U2NET_HOME) / "u2netp.onnx"
    assert installed.is_file(), f"{installed} is missing: run `make models`"
    import hashlib

    assert hashlib.md5(installed.read_bytes()).hexdigest() == MD5  # noqa: S324
    real = Engine(replace(engine.options, u2net_home=Path(settings.U2NET_HOME)))
    image = Image.new("RGB", (160, 120), (235, 235, 235))
    ImageDraw.Draw(image).ellipse((50, 30, 110, 90), fill=(200, 20, 20))
    result = real.run("rembg", {"input_image": png_b64(image), "model": "u2netp"}, JobFiles())
    alpha = np.asarray(Image.open(io.BytesIO(result.images[0])))[:, :, 3]
    assert alpha[60, 80] > 200 and alpha[5, 5] < 30


def test_extra_single_image_upscales(engine) -> None:
    result = engine.run("extra-single-image", {"image": png_b64(red_disc((40, 30))), "upscaling_resize": 2}, JobFiles())
    assert Image.open(io.BytesIO(result.images[0])).size == (80, 60)
    assert "80x60" in result.worker_json()["html_info"]


def test_sd_model_checkpoint_picks_one_of_the_jobs_models(engine, models) -> None:
    both = JobFiles(checkpoint=models["checkpoint"], checkpoints=(models["checkpoint"], models["other"]))
    default = engine.run("txt2img", txt2img(seed=3), both)
    title = f"{models['other'].name} [{models['other'].short_hash}]"  # A1111 sends the title with the hash
    picked = engine.run("txt2img", txt2img(seed=3, override_settings={"sd_model_checkpoint": title}), both)
    assert "Model: tiny-other" in Image.open(io.BytesIO(picked.images[0])).text["parameters"]
    assert "Model: tiny-sd1" in Image.open(io.BytesIO(default.images[0])).text["parameters"]
    assert np.abs(pixels(picked.images[0]) - pixels(default.images[0])).max() > 0
    assert picked.ignored == []
    with pytest.raises(EngineError, match=r"names 'absent', but the job's Stable-diffusion models are: tiny-sd1"):
        engine.run("txt2img", txt2img(override_settings={"sd_model_checkpoint": "absent"}), both)


def test_refuse_mode_fails_a_job_the_engine_would_run_differently(models, u2net_home: Path) -> None:
    from inferences.engine.runner import Engine

    strict = Engine(EngineOptions(u2net_home=u2net_home, unhonoured="refuse"))
    files = JobFiles(checkpoint=models["checkpoint"])
    assert strict.run("txt2img", txt2img(sampler_name="Euler a"), files).images  # nothing unhonoured: it runs
    # known only on the worker: GPU noise asked of a worker without CUDA
    with pytest.raises(EngineError, match=r"ESD_UNHONOURED_PARAMETERS=refuse.*randn_source GPU"):
        strict.run("txt2img", txt2img(override_settings={"randn_source": "GPU"}), files)


class CancelAfter(NoProgress):
    """A progress whose cancel flag rises once `checks` looks have been answered False; it records steps."""

    def __init__(self, checks: int) -> None:
        self.checks, self.steps = checks, []

    def step(self, done: int, total: int) -> None:
        self.steps.append(done)

    def cancelled(self) -> bool:
        self.checks -= 1
        return self.checks < 0


def test_a_job_cancelled_before_its_first_step_stops_there(models, u2net_home) -> None:
    """Issue 29.6: a job cancelled while queued or while its model loaded ran on past 200 s on a CPU."""
    from inferences.engine.runner import Engine

    engine = Engine(EngineOptions(u2net_home=u2net_home))
    files = JobFiles(checkpoint=models["checkpoint"])
    queued = CancelAfter(0)
    with pytest.raises(Cancelled):
        engine.run("txt2img", txt2img(), files, queued)
    assert len(engine.pipelines) == 0 and queued.steps == []  # nothing loaded
    loading = CancelAfter(1)  # cancelled while the model loaded
    with pytest.raises(Cancelled):
        engine.run("txt2img", txt2img(), files, loading)
    assert len(engine.pipelines) == 1 and loading.steps == []  # loaded, then stopped before encoding and sampling


def test_a_segment_weighted_minus_one_is_encoded_not_taken_for_break() -> None:
    """Issue 30.5. A1111's prompt_parser.parse_prompt_attention("(a:-1) b BREAK c") gives [['a', -1.0], [' b', 1.0],
    ['BREAK', -1], ['c', 1.0]], and sd_hijack_clip's tokenize_line closes a chunk only for `text == 'BREAK' and
    weight == -1`: `a` is a token with multiplier -1 in the first chunk, `c` opens the second."""
    from inferences.engine.sampling.conditioning import _chunks

    class Tokenizer:
        def __call__(self, text, add_special_tokens, truncation):
            return type("Encoded", (), {"input_ids": [len(word) for word in text.split()]})()

    pipe = type("Pipe", (), {"tokenizer": Tokenizer()})()
    assert _chunks(pipe, "(abc:-1) b BREAK cc") == [([3, 1], [-1.0, 1.0]), ([2], [1.0])]


def test_a_chunk_that_fills_soon_after_a_comma_moves_the_words_after_it_on() -> None:
    """Issue 30.3. A1111's sd_hijack_clip.tokenize_line with `comma_padding_backtrack` 20 (its default): at a full
    75-token chunk, when the token is no comma and the last comma is at most 20 tokens back, the tokens after the
    comma move to the next chunk. 70 words, a comma, 10 words: the comma sits at 70, the chunk fills at 75, so words
    71-74 move on and the first chunk ends with the comma; without a comma near, the cut stays at 75."""
    import re

    from inferences.engine.sampling.conditioning import _chunks

    class Tokenizer:
        def get_vocab(self):
            return {",</w>": 999}

        def __call__(self, text, add_special_tokens, truncation):
            ids = [999 if part == "," else int(part[1:]) for part in re.findall(r"w\d+|,", text)]
            return type("Encoded", (), {"input_ids": ids})()

    pipe = type("Pipe", (), {"tokenizer": Tokenizer()})()
    words = [f"w{n}" for n in range(1, 81)]
    first, second = _chunks(pipe, " ".join(words[:70]) + ", " + " ".join(words[70:]))
    assert first[0] == [*range(1, 71), 999] and second[0] == list(range(71, 81))
    far = _chunks(pipe, " ".join(words[:40]) + ", " + " ".join(words[40:]))  # the comma 35 tokens back: no move
    assert len(far[0][0]) == 75 and far[1][0] == list(range(75, 81))


def test_the_comma_token_is_looked_up_once_per_tokenizer() -> None:
    """`get_vocab()` builds the whole vocabulary each call (20 ms for CLIP's): twice per job, it made
    bench/engine_overhead.py's txt2img ratio 1.43 instead of 1.01."""
    from inferences.engine.sampling.conditioning import _chunks

    class Tokenizer:
        built = 0

        def get_vocab(self):
            Tokenizer.built += 1
            return {",</w>": 999}

        def __call__(self, text, add_special_tokens, truncation):
            return type("Encoded", (), {"input_ids": [999 if word == "," else 1 for word in text.split()]})()

    pipe = type("Pipe", (), {"tokenizer": Tokenizer()})()
    for _ in range(3):
        assert _chunks(pipe, "a , b") == [([1, 999, 1], [1.0, 1.0, 1.0])]
    assert Tokenizer.built == 1
