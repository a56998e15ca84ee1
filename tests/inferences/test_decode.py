"""The VAE decode in batches (issue 28.2): how many images one call takes, and that a batched decode gives the
one-image-at-a-time pictures. A CPU worker keeps one image per call (its pictures are the lone job's, bit for bit);
on CUDA the count follows the device's free memory, checked here through the same function."""

import numpy as np
import pytest
import torch

from inferences.engine.generate import ModelRun
from inferences.engine.models.loading import load_model
from inferences.engine.request.memory import VAE_FACTOR, decode_rows, estimate, vae_decode_bytes
from inferences.engine.request.options import EngineOptions


@pytest.mark.parametrize(
    ("images", "per_image", "free", "rows"),
    [(8, 100, None, 1), (8, 100, 50, 1), (8, 100, 350, 3), (8, 100, 800, 8), (8, 100, 10_000, 8), (1, 100, 10_000, 1)],
)
def test_one_call_takes_the_images_free_memory_holds(images, per_image, free, rows):
    assert decode_rows(images, per_image, free) == rows


def test_the_estimate_and_the_decode_count_one_image_alike():
    """One source for an image's decode working set: the memory estimate's VAE term is vae_decode_bytes."""
    from inferences.engine.request.memory import ModelShape

    shape = ModelShape(parameters=10**9, unet_width=320, vae_width=128)
    assert (
        estimate(shape, 512, 512, 8, 2).vae == vae_decode_bytes(512 * 512, 128, 2) == VAE_FACTOR * 512 * 512 * 128 * 2
    )


def test_a_batched_decode_gives_the_one_at_a_time_pictures(models):
    run = ModelRun.of(load_model(models["checkpoint"], None, EngineOptions()))
    assert run.decode_rows(8, 64, 64) == 1  # a CPU worker: one image per call
    latents = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        alone = run.decode(latents, 64, 64, rows=1)
        batched = run.decode(latents, 64, 64, rows=3)  # calls of 3 and 2 images
    assert len(batched) == len(alone) == 5 and run.pipe.vae.use_slicing  # slicing back on for the default
    for one, other in zip(alone, batched, strict=True):
        # the same convolutions over more rows: equal up to the last bit of a float, one 8-bit level at most
        difference = np.abs(np.asarray(one, dtype=int) - np.asarray(other, dtype=int))
        assert one.size == other.size == (64, 64) and difference.max() <= 1
