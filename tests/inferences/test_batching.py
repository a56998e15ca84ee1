"""Dynamic batching in the engine: jobs that share one denoising loop get exactly the pictures they get alone."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from inferences.engine.errors import Cancelled, EngineError
from inferences.engine.request.batch_key import ALONE, batch_key
from inferences.engine.request.job_models import JobModels, Lora
from inferences.engine.request.limits import Limits
from inferences.engine.request.options import JobFiles, ModelFile, NoProgress
from inferences.engine.request.payload import parse_request
from inferences.engine.runner import Job

from .conftest import txt2img
from .test_ksampling import png_pixels

SHARED = {"steps": 8, "sampler_name": "Euler a", "width": 64, "height": 64}


def neighbours() -> list[dict[str, object]]:
    """Four jobs of one loop that differ in all that is per job: prompts, negative prompts, seeds, CFG scale,
    batch size, prompt editing and an embedding."""
    return [
        txt2img(**SHARED, prompt="a red fox in snow", negative_prompt="blurry", seed=11, cfg_scale=7.0),
        txt2img(**SHARED, prompt="a lighthouse at dusk", negative_prompt="", seed=12, cfg_scale=4.5, batch_size=2),
        txt2img(**SHARED, prompt="a [cat:dog:0.5] on a sofa", negative_prompt="ugly", seed=13, cfg_scale=9.0),
        txt2img(**SHARED, prompt="a style portrait", negative_prompt="blurry", seed=-1, cfg_scale=7.0),
    ]


def without_timestamp(info: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in info.items() if key != "job_timestamp"}


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M"])
def test_jobs_batched_together_give_the_images_they_give_alone(engine, models, sampler):
    files = JobFiles(checkpoint=models["checkpoint"], embeddings=(models["embedding"],))
    payloads = [{**payload, "sampler_name": sampler} for payload in neighbours()]
    together = engine.run_batch([Job("txt2img", payload, files) for payload in payloads])
    assert [result.timings["batch_jobs"] for result in together] == [4.0] * 4  # one loop ran them all
    assert [result.timings["batch_images"] for result in together] == [5.0] * 4
    for payload, batched in zip(payloads, together, strict=True):
        seed = json.loads(batched.document()["info"])["seed"]  # the random one (-1) as drawn, to run it again
        alone = engine.run("txt2img", {**payload, "seed": seed}, files)
        assert "batch_jobs" not in alone.timings
        assert len(batched.images) == len(alone.images) == payload["batch_size"]
        for mine, theirs in zip(batched.images, alone.images, strict=True):
            assert np.array_equal(png_pixels(mine), png_pixels(theirs))  # tolerance 0
            assert mine == theirs  # the same PNG bytes: the infotext too
        assert without_timestamp(json.loads(batched.document()["info"])) == without_timestamp(
            json.loads(alone.document()["info"])
        )


class UNetCalls:
    """Records the inputs of every UNet call (through the engine's k-diffusion wrapper): latents, timesteps, text."""

    def __init__(self, monkeypatch) -> None:
        from inferences.engine.sampling import ksampling

        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        original = ksampling._UNetEps.forward

        def spy(inner, x, t, cond, *args, **kwargs):
            self.calls.append((x.clone(), t.clone(), cond.hidden.clone()))
            return original(inner, x, t, cond, *args, **kwargs)

        monkeypatch.setattr(ksampling._UNetEps, "forward", spy)

    def take(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        calls, self.calls = self.calls, []
        return calls


def test_on_cpu_each_unet_call_of_a_batch_is_the_call_its_image_makes_alone(engine, models, monkeypatch):
    """The construction the pictures' equality rests on, checked call by call: it holds on any CPU's kernels,
    because a batch's call for an image has the same shape and the same numbers as that image's call alone."""
    files = JobFiles(checkpoint=models["checkpoint"], embeddings=(models["embedding"],))
    payloads = [{**payload, "seed": 40 + k} for k, payload in enumerate(neighbours())]
    spy = UNetCalls(monkeypatch)
    engine.run_batch([Job("txt2img", payload, files) for payload in payloads])
    together = spy.take()
    images = sum(payload["batch_size"] for payload in payloads)
    assert len(together) == SHARED["steps"] * images  # Euler a: one model evaluation per step and image
    assert all(x.shape[0] == t.shape[0] == hidden.shape[0] == 2 for x, t, hidden in together)  # [cond, uncond]
    first = 0  # the batch's first image of the job
    for payload in payloads:
        engine.run("txt2img", payload, files)
        alone = spy.take()
        assert len(alone) == SHARED["steps"] * payload["batch_size"]
        for step in range(SHARED["steps"]):
            for k in range(payload["batch_size"]):
                mine = together[step * images + first + k]
                theirs = alone[step * payload["batch_size"] + k]
                assert all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True)), (payload["prompt"], step)
        first += payload["batch_size"]


class CancelAfter(NoProgress):
    """A job's progress whose cancel flag is seen from step `step` on."""

    def __init__(self, step: int) -> None:
        self.step_seen = 0
        self.after = step

    def step(self, done: int, total: int) -> None:
        self.step_seen = done

    def cancelled(self) -> bool:
        return self.step_seen >= self.after


def test_a_cancelled_job_leaves_the_batch_and_the_others_go_on(engine, models, monkeypatch):
    from inferences.engine.sampling import ksampling

    files = JobFiles(checkpoint=models["checkpoint"])
    payloads = neighbours()[:3]
    rows_seen: list[int] = []
    original = ksampling.CFGDenoiser._guided

    def spy(self, x, sigma, scale):
        rows_seen.append(x.shape[0])
        return original(self, x, sigma, scale)

    monkeypatch.setattr(ksampling.CFGDenoiser, "_guided", spy)
    quitter = CancelAfter(3)
    jobs = [Job("txt2img", payloads[0], files), Job("txt2img", payloads[1], files, quitter)]
    jobs.append(Job("txt2img", payloads[2], files))
    together = engine.run_batch(jobs)
    monkeypatch.undo()
    assert isinstance(together[1], Cancelled)
    assert quitter.step_seen == 3  # three steps reported; its flag seen at the fourth's end, and it left there
    assert rows_seen == [4] * 4 + [2] * 4  # its two images cost no UNet time after that
    for payload, batched in zip([payloads[0], payloads[2]], [together[0], together[2]], strict=True):
        alone = engine.run("txt2img", payload, files)
        assert batched.images == alone.images
        assert batched.timings["batch_jobs"] == 2.0  # two jobs finished from the loop


def test_the_jobs_of_a_batch_are_decoded_together_where_the_device_allows(engine, models, monkeypatch):
    """A CUDA worker decodes the batch's images in as few VAE calls as free memory allows (issue 28.2: 16 jobs
    decoded one by one left the GPU idle); a cancelled job's rows are not decoded. Here the device is said to hold
    4 images per call: 5 images of 4 jobs, one of them (2 images) cancelled, are 3 rows in one call."""
    from inferences.engine.generate import ModelRun

    files = JobFiles(checkpoint=models["checkpoint"], embeddings=(models["embedding"],))
    payloads = neighbours()
    calls: list[int] = []
    decode = ModelRun.decode

    def counted(run, latents, width, height, rows=None):
        calls.append(len(latents))
        return decode(run, latents, width, height, rows)

    monkeypatch.setattr(ModelRun, "decode_rows", lambda run, images, width, height: 4)
    monkeypatch.setattr(ModelRun, "decode", counted)
    jobs = [Job("txt2img", payload, files) for payload in payloads]
    jobs[1] = Job("txt2img", payloads[1], files, CancelAfter(3))
    together = engine.run_batch(jobs)
    assert calls == [3] and isinstance(together[1], Cancelled)
    monkeypatch.undo()
    for index in (0, 2, 3):
        seed = json.loads(together[index].document()["info"])["seed"]
        alone = engine.run("txt2img", {**payloads[index], "seed": seed}, files)
        assert len(together[index].images) == len(alone.images) == 1
        # the same latents through a VAE call of more rows: one 8-bit level at most (test_decode.py)
        difference = np.abs(png_pixels(together[index].images[0]).astype(int) - png_pixels(alone.images[0]))
        assert difference.max() <= 1


def test_one_jobs_bad_input_fails_it_alone(engine, models):
    files = JobFiles(checkpoint=models["checkpoint"])
    good = txt2img(**SHARED, prompt="a boat", seed=5)
    jobs = [
        Job("txt2img", good, files),
        Job("txt2img", txt2img(**SHARED, prompt="a <lora:missing:1> boat", seed=6), files),
        Job("txt2img", {**good, "steps": "many"}, files),
        Job("txt2img", txt2img(**SHARED, prompt="a cart", seed=7), files),
    ]
    outcomes = engine.run_batch(jobs)
    assert isinstance(outcomes[1], EngineError) and "missing" in str(outcomes[1])
    assert isinstance(outcomes[2], EngineError) and "steps" in str(outcomes[2])
    assert outcomes[0].timings["batch_jobs"] == 2.0 and outcomes[3].timings["batch_jobs"] == 2.0
    assert outcomes[0].images == engine.run("txt2img", good, files).images


def test_jobs_that_cannot_share_a_loop_run_one_by_one(engine, models):
    files = JobFiles(checkpoint=models["checkpoint"])
    jobs = [
        Job("txt2img", txt2img(**SHARED, seed=1), files),
        Job("txt2img", txt2img(**{**SHARED, "steps": 6}, seed=2), files),  # another schedule
        Job("txt2img", txt2img(**SHARED, seed=3, prompt="word " * 80), files),  # 154 tokens against 77: CFG splits
    ]
    outcomes = engine.run_batch(jobs)
    assert all("batch_jobs" not in outcome.timings for outcome in outcomes)


LIMITS = Limits()
NO_FILES = JobModels()


def key_of(payload, models=NO_FILES):
    return batch_key(parse_request("txt2img", payload, LIMITS), models)


@pytest.mark.parametrize(
    "change",
    [
        {"steps": 9},
        {"width": 128},
        {"sampler_name": "DPM++ 2M"},
        {"scheduler": "Karras"},
        {"prompt": "a cat <lora:watercolor:0.5>"},
        {"override_settings": {"CLIP_stop_at_last_layers": 2}},
        {"eta": 0.5},
    ],
)
def test_the_batch_key_tells_loops_apart(change):
    base = key_of(txt2img(**SHARED))
    assert base != ALONE
    assert key_of(txt2img(**{**SHARED, **change})) != base


def test_the_batch_key_ignores_what_is_per_job():
    base = key_of(txt2img(**SHARED))
    per_job = {"prompt": "other", "negative_prompt": "x", "seed": 9, "cfg_scale": 3.0, "batch_size": 2}
    assert key_of(txt2img(**{**SHARED, **per_job})) == base


def test_the_batch_key_holds_the_files_the_plan_picked():
    """The same payload on another checkpoint, VAE or LoRA file (same names, other contents) is another loop."""

    def file(name, sha):
        return ModelFile(Path(name), name, sha)

    payload = txt2img(**{**SHARED, "prompt": "a cat <lora:watercolor:0.5>"})
    base = JobModels(
        checkpoint=file("m.safetensors", "a" * 64), loras=(Lora(file("watercolor.safetensors", "b" * 64), 0.5),)
    )
    assert key_of(payload, base) == key_of(payload, replace(base))
    assert key_of(payload, replace(base, checkpoint=file("m.safetensors", "c" * 64))) != key_of(payload, base)
    assert key_of(payload, replace(base, vae=file("v.safetensors", "d" * 64))) != key_of(payload, base)
    other_lora = (Lora(file("watercolor.safetensors", "e" * 64), 0.5),)
    assert key_of(payload, replace(base, loras=other_lora)) != key_of(payload, base)


@pytest.mark.parametrize(
    "change",
    [{"n_iter": 2}, {"enable_hr": True}, {"sampler_name": "DPM adaptive"}, {"prompt": "a AND b"}],
)
def test_jobs_that_run_more_than_one_loop_run_alone(change):
    assert key_of(txt2img(**{**SHARED, **change})) == ALONE
    assert NoProgress().cancelled() is False
