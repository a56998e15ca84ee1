"""How much one job may ask for: sizes, steps, batch, prompt and input images (the operator's ESD_MAX_* settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_side: int = 2048
    max_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_batch_size: int = 8
    max_images: int = 16
    max_prompt_chars: int = 20_000
    max_input_pixels: int = 4096 * 4096
    max_input_bytes: int = 32 * 1024 * 1024
    # All the images of one job together (init images, mask, ControlNet images): 16 init images of 4096² would
    # decode to 1 GiB; this bounds a job's decoded images at about 200 MiB of RGBA.
    max_job_input_pixels: int = 3 * 4096 * 4096
    # False where only the request's validity matters (the web process at `start`): images are checked by their
    # headers and stay compressed; the worker decodes them.
    load_images: bool = True
