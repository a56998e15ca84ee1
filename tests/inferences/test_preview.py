"""The live preview (issue 31.1): A1111's "Approx cheap" picture of a step's prediction, made only where the job's
progress asks for one, of the job's own rows in a batch; the worker's cadence and the row it writes."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from inferences.engine.request.options import JobFiles, NoProgress
from inferences.engine.runner import Job
from inferences.engine.sampling.preview import SD1, SDXL, approx_cheap, grid

from .conftest import txt2img


def a1111_cheap(latent: np.ndarray, coefficients) -> np.ndarray:
    """A1111's sd_samplers_common.single_sample_to_image with "Approx cheap", written out with numpy from its code:
    einsum("lxy,lr -> rxy"), * 0.5 + 0.5, clamp to [0, 1], 255 * moveaxis, astype(uint8) (truncation)."""
    rgb = np.einsum("lxy,lr->rxy", latent, np.array(coefficients, dtype=np.float64)) * 0.5 + 0.5
    return (255.0 * np.moveaxis(np.clip(rgb, 0.0, 1.0), 0, 2)).astype(np.uint8)


@pytest.mark.parametrize(("sdxl", "coefficients"), [(False, SD1), (True, SDXL)])
def test_the_preview_is_a1111s_approx_cheap(sdxl, coefficients):
    latents = torch.randn(2, 4, 6, 10, generator=torch.Generator().manual_seed(3)) * 2
    mine = [np.asarray(picture) for picture in approx_cheap(latents, sdxl)]
    for picture, latent in zip(mine, latents.double().numpy(), strict=True):
        theirs = a1111_cheap(latent, coefficients)
        assert picture.shape == (6, 10, 3)
        # float32 here, float64 there: a value on a level's edge may truncate one level apart, never more
        assert np.abs(picture.astype(int) - theirs.astype(int)).max() <= 1
        assert (picture == theirs).mean() > 0.95


def test_the_grid_is_a1111s_layout():
    pictures = [Image.new("RGB", (4, 3), (index * 40, 0, 0)) for index in range(3)]
    sheet = grid(pictures)  # round(sqrt(3)) = 2 rows, 2 columns
    assert sheet.size == (8, 6)
    assert sheet.getpixel((5, 1)) == (40, 0, 0) and sheet.getpixel((1, 4)) == (80, 0, 0)
    assert grid(pictures[:1]).size == (4, 3) and grid(pictures * 2).size == (12, 6)


class Previews(NoProgress):
    """A progress that wants a preview every `every` steps and keeps them."""

    def __init__(self, every: int) -> None:
        self.every, self.pictures, self.at = every, [], []
        self.done = 0

    def step(self, done: int, total: int) -> None:
        self.done = done

    def wants_preview(self, done: int) -> bool:
        return done % self.every == 0

    def preview(self, picture: bytes) -> None:
        self.at.append(self.done)
        self.pictures.append(Image.open(io.BytesIO(picture)))


def test_a_job_gets_a_preview_where_its_progress_wants_one_and_the_same_pictures(engine, files: JobFiles):
    payload = txt2img(steps=6, width=64, height=96, batch_size=2, seed=9)
    watched = Previews(every=2)
    previewed = engine.run("txt2img", payload, files, watched)
    assert watched.at == [2, 4, 6]
    assert all(picture.format == "JPEG" and picture.size == (16, 12) for picture in watched.pictures)  # 2 side by side
    assert previewed.images == engine.run("txt2img", payload, files).images  # a preview changes nothing


def test_each_batched_job_previews_its_own_rows(engine, files: JobFiles):
    shared = {"steps": 4, "sampler_name": "Euler a", "width": 64, "height": 64}
    watchers = [Previews(every=2), NoProgress(), Previews(every=4)]
    jobs = [
        Job("txt2img", txt2img(**shared, prompt="a fox", seed=1, batch_size=3), files, watchers[0]),
        Job("txt2img", txt2img(**shared, prompt="a boat", seed=2), files, watchers[1]),
        Job("txt2img", txt2img(**shared, prompt="a cart", seed=3), files, watchers[2]),
    ]
    outcomes = engine.run_batch(jobs)
    assert all(outcome.timings["batch_jobs"] == 3.0 for outcome in outcomes)
    assert watchers[0].at == [2, 4] and {picture.size for picture in watchers[0].pictures} == {(16, 16)}  # 3: 2x2
    assert watchers[2].at == [4] and watchers[2].pictures[0].size == (8, 8)


def test_the_worker_previews_every_few_steps_at_most_twice_a_second(monkeypatch):
    from inferences import execution

    progress = execution.JobProgress("00000000-0000-0000-0000-000000000000", preview_every=5)
    progress._total = 20
    wanted = [done for done in range(1, 21) if progress.wants_preview(done)]
    assert wanted == [5, 10, 15]  # never after the last step: the pictures come then
    progress._previewed = execution.time.monotonic()
    assert not progress.wants_preview(10)  # one was written just now
    assert not execution.JobProgress("x", preview_every=0).wants_preview(5)
