"""Inpainting's pictures as A1111 prepares and composes them (issue 30.15): processing.py's
StableDiffusionProcessingImg2Img.init (create_binary_mask, cv2's Gaussian blur per axis before any resize, "Only
masked" with its crop region and padding, `masking.fill` before encoding for every fill but "original"), and
apply_overlay / uncrop for the final picture. The latent blend itself is ksampling's LatentMask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..request import images


@dataclass
class Inpainting:
    """One img2img job's inpainting frame."""

    mask: Image.Image  # L, width x height: what the latent mask is made from (white: painted again)
    sources: list[Image.Image]  # per init picture, width x height: what is encoded
    overlays: list[Image.Image]  # per init picture, RGBA at the output's size: the kept original, mask as alpha
    paste_to: tuple[int, int, int, int] | None  # "Only masked": where the picture goes back (x, y, w, h)

    def compose(self, picture: Image.Image, index: int) -> Image.Image:
        """A1111's apply_overlay: the generated picture (put back into its crop, for "Only masked") under the
        original it keeps."""
        overlay = self.overlays[index % len(self.overlays)]
        if self.paste_to is not None:  # uncrop
            x, y, w, h = self.paste_to
            base = Image.new("RGBA", overlay.size)
            base.paste(images.resize(picture, w, h, 1), (x, y))
            picture = base
        picture = picture.convert("RGBA")
        picture.alpha_composite(overlay)
        return picture.convert("RGB")


def binary_mask(mask: Image.Image) -> Image.Image:
    """A1111's create_binary_mask (round=True): an RGBA mask with any transparency is its alpha, cut at 128; any
    other mask is its grey levels."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        return mask.split()[-1].convert("L").point(lambda value: 255 if value > 128 else 0)
    return mask.convert("L")


def painted_area(mask: Image.Image, invert: bool) -> Image.Image:
    """The mask as A1111 reads it before blurring: binary_mask, inverted for "Inpaint not masked"."""
    painted = binary_mask(mask)
    return ImageOps.invert(painted) if invert else painted


def drops_mask(mask: Image.Image, invert: bool, only_masked: bool) -> bool:
    """Whether A1111 runs the job as plain img2img: "Only masked" with nothing painted (a blur of nothing is
    nothing, so the painted area decides)."""
    return only_masked and painted_area(mask, invert).getbbox() is None


def blur(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's mask blur: cv2's Gaussian blur along x, then along y, each with its kernel 2 * int(2.5 * sigma + 0.5) + 1."""
    for sigma, horizontal in ((blur_x, True), (blur_y, False)):
        if sigma > 0:
            size = 2 * int(2.5 * sigma + 0.5) + 1
            kernel = (size, 1) if horizontal else (1, size)
            mask = Image.fromarray(cv2.GaussianBlur(np.array(mask), kernel, sigma))
    return mask


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """A1111's masking.get_crop_region_v2: the box of the painted pixels, padded; None for a blank mask."""
    box = mask.getbbox()
    if box is None or not padding:
        return box
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(
    region: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int
) -> tuple[int, int, int, int]:
    """A1111's masking.expand_crop_region: the box grown to the generation's aspect ratio, kept inside the
    picture."""
    x1, y1, x2, y2 = region
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow(y1, y2, int((x2 - x1) / (width / height) - (y2 - y1)), image_height)
    else:
        x1, x2 = _grow(x1, x2, int((y2 - y1) * (width / height) - (x2 - x1)), image_width)
    return x1, y1, x2, y2


def _grow(low: int, high: int, grow: int, limit: int) -> tuple[int, int]:
    """One side of expand_crop_region: grown by `grow` (the odd pixel after), moved back inside [0, limit]."""
    low, high = low - grow // 2, high + grow - grow // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's masking.fill: the painted area filled with the colours around it, by ever finer blurs of the kept
    picture laid over each other."""
    filled = Image.new("RGBA", image.size)
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def prepare(
    pictures: list[Image.Image],
    mask: Image.Image,
    width: int,
    height: int,
    *,
    resize_mode: int,
    invert: bool,
    blur_x: int,
    blur_y: int,
    inpainting_fill: int,
    only_masked: bool,
    padding: int,
) -> Inpainting | None:
    """The frame A1111's img2img `init` makes for a mask, or None where A1111 drops the mask ("Only masked" with a
    blank mask: plain img2img)."""
    painted = blur(painted_area(mask, invert), blur_x, blur_y)
    region = None
    if only_masked:
        overlay_mask = painted
        region = crop_region(painted, padding)
        if region is None:
            return None
        region = expand_crop_region(region, width, height, painted.width, painted.height)
        latent_mask = images.resize(painted.crop(region), width, height, 2).convert("L")
    else:
        latent_mask = images.resize(painted, width, height, resize_mode).convert("L")
        doubled = np.clip(np.asarray(latent_mask).astype(np.float32) * 2, 0, 255).astype(np.uint8)
        overlay_mask = Image.fromarray(doubled)
    sources, overlays = [], []
    for picture in pictures:
        image = images.flatten(picture)
        if region is None:
            image = images.resize(image, width, height, resize_mode)
        if overlay_mask.size != image.size:
            overlay_mask = images.resize(overlay_mask, image.width, image.height, resize_mode).convert("L")
        kept = Image.new("RGBa", image.size)
        kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
        overlays.append(kept.convert("RGBA"))
        if region is not None:
            image = images.resize(image.crop(region), width, height, 2)
        sources.append(image if inpainting_fill == 1 else fill(image, latent_mask))
    paste_to = None if region is None else (region[0], region[1], region[2] - region[0], region[3] - region[1])
    return Inpainting(latent_mask, sources, overlays, paste_to)
