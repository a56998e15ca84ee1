"""Live preview: A1111's "Approx cheap" (sd_vae_approx.cheap_approximation) — a fixed linear map from the latents'
four channels to RGB, one per model family, with no UNet or VAE call — as a small JPEG of the job's images laid out
as A1111's image_grid lays them. It costs one einsum over latent-sized tensors and one small JPEG."""

from __future__ import annotations

import io
import math

import torch
from PIL import Image

# A1111's coefficients (rows: latent channels; columns: R, G, B), for its `denoised` latents, the same space as here
SD1 = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
SDXL = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)
JPEG_QUALITY = 80


def approx_cheap(latents: torch.Tensor, sdxl: bool) -> list[Image.Image]:
    """Each row of `latents` (N x 4 x h x w) as an h x w picture, as A1111's single_sample_to_image with "Approx cheap":
    the projection, then (x + 1) / 2 clamped to [0, 1], times 255, truncated to 8 bits."""
    coefficients = torch.tensor(SDXL if sdxl else SD1, dtype=torch.float32, device=latents.device)
    rgb = torch.einsum("nlyx,lr->nryx", latents.float(), coefficients)
    pixels = ((rgb * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(row) for row in pixels]


def grid(pictures: list[Image.Image]) -> Image.Image:
    """A1111's images.image_grid with its default layout: round(√n) rows, as many columns as they need."""
    rows = min(len(pictures), max(1, round(math.sqrt(len(pictures)))))
    columns = math.ceil(len(pictures) / rows)
    width, height = pictures[0].size
    sheet = Image.new("RGB", (columns * width, rows * height), "black")
    for index, picture in enumerate(pictures):
        sheet.paste(picture, ((index % columns) * width, (index // columns) * height))
    return sheet


def preview_jpeg(latents: torch.Tensor, sdxl: bool) -> bytes:
    """The preview a job's page shows: its rows' cheap approximations in one grid, as a JPEG."""
    buffer = io.BytesIO()
    grid(approx_cheap(latents, sdxl)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
