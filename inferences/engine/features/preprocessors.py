"""sd-webui-controlnet's preprocessors that need no downloaded weights, as that extension computes them (OpenCV and
numpy, no torch), and the control image's fit to the generation size.

Each takes an RGB picture and returns its detected map (RGB, uint8). Sizes follow the extension's
`resize_image_with_pad`: the short side scaled to the processor resolution (bicubic up, area down), edge-padded
to a multiple of 64 while processing, the padding cut off after.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image

from ..request.controlnet_payload import ControlUnit
from . import thinning

Map = np.ndarray


def hwc3(image: Map) -> Map:
    """The extension's HWC3: grey → three equal channels, RGBA → RGB over white."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.concatenate([image] * 3, axis=2)
    if image.shape[2] == 4:
        color, alpha = image[:, :, :3].astype(np.float32), image[:, :, 3:4].astype(np.float32) / 255.0
        return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return image


def _pad64(value: int) -> int:
    return int(np.ceil(float(value) / 64.0) * 64 - value)


def resize_with_pad(image: Map, resolution: int) -> tuple[Map, Callable[[Map], Map]]:
    image = hwc3(image)
    height, width = image.shape[:2]
    k = float(resolution) / float(min(height, width))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    target_h, target_w = int(np.round(float(height) * k)), int(np.round(float(width) * k))
    image = cv2.resize(image, (target_w, target_h), interpolation=interpolation)
    padded = np.pad(image, [[0, _pad64(target_h)], [0, _pad64(target_w)], [0, 0]], mode="edge")

    def remove_pad(result: Map) -> Map:
        return np.ascontiguousarray(result[:target_h, :target_w].copy())

    return np.ascontiguousarray(padded.copy()), remove_pad


def canny(image: Map, resolution: int, low: float, high: float) -> Map:
    padded, remove_pad = resize_with_pad(image, resolution)
    return remove_pad(cv2.Canny(padded, low, high))


def invert(image: Map) -> Map:
    """ "invert (from white bg & black line)": line art drawn dark on white, as ControlNet's models expect it. At the
    input's own size, as the extension's PreprocessorInvert (it takes no resolution); the map is fitted after."""
    return 255 - hwc3(image)


def scribble_xdog(image: Map, resolution: int, threshold: float) -> Map:
    padded, remove_pad = resize_with_pad(image, resolution)
    fine = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 0.5)
    coarse = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(coarse - fine, axis=2)).clip(0, 255).astype(np.uint8)
    result = np.zeros_like(padded, dtype=np.uint8)
    result[2 * (255 - dog) > threshold] = 255
    return remove_pad(result)


def threshold(image: Map, resolution: int, level: float) -> Map:
    padded, remove_pad = resize_with_pad(image, resolution)
    result = np.zeros_like(padded, dtype=np.uint8)
    result[np.min(padded, axis=2) > level] = 255
    return remove_pad(result)


def tile_resample(image: Map, down_sampling: float) -> Map:
    """ControlNet tile's input: the picture made `down_sampling` times smaller (below 1.1, unchanged)."""
    image = hwc3(image)
    if down_sampling < 1.1:
        return image
    height, width = image.shape[:2]
    size = (int(float(width) / down_sampling), int(float(height) / down_sampling))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def blur_gaussian(image: Map, resolution: int, sigma: float) -> Map:
    padded, remove_pad = resize_with_pad(image, resolution)
    return cv2.GaussianBlur(remove_pad(padded), (0, 0), float(sigma))


def lineart_standard(image: Map, resolution: int) -> Map:
    padded, remove_pad = resize_with_pad(image, resolution)
    x = padded.astype(np.float32)
    blurred = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(blurred - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
    intensity *= 127
    return remove_pad(intensity.clip(0, 255).astype(np.uint8))


def _noise_disk(height: int, width: int, factor: int, rng: np.random.RandomState) -> Map:
    coarse = rng.uniform(low=0, high=1, size=((height // factor) + 2, (width // factor) + 2))
    noise: Map = cv2.resize(coarse, (width + 2 * factor, height + 2 * factor), interpolation=cv2.INTER_CUBIC)
    noise = noise[factor : factor + height, factor : factor + width]
    noise -= np.min(noise)
    noise /= np.max(noise)
    return noise[:, :, None]


def shuffle(image: Map, resolution: int, numpy_seed: int) -> Map:
    """The extension's ContentShuffleDetector: the picture (resized, its padding cut off first) remapped through a
    smooth random flow drawn from numpy's legacy generator seeded with `numpy_seed` (extension_numpy_seed)."""
    padded, remove_pad = resize_with_pad(image, resolution)
    picture = remove_pad(padded)
    height, width = picture.shape[:2]
    rng = np.random.RandomState(numpy_seed)  # np.random.seed + np.random.uniform, as the extension draws them
    x = _noise_disk(height, width, 256, rng) * float(width - 1)
    y = _noise_disk(height, width, 256, rng) * float(height - 1)
    flow = np.concatenate([x, y], axis=2).astype(np.float32)
    return cv2.remap(picture, flow, None, cv2.INTER_LINEAR)


def extension_numpy_seed(first_seed: int, seed: int, subseed: int) -> int:
    """The extension's set_numpy_seed: the payload's seed and subseed (each -1 taken as the job's first image seed,
    a negative one as 0) added, kept to 32 bits. `first_seed`: A1111's all_seeds[0]."""
    chosen = first_seed if seed == -1 else max(seed, 0)
    sub = first_seed if subseed == -1 else max(subseed, 0)
    return (chosen + sub) & 0xFFFFFFFF


def pixel_perfect_resolution(image: Map, width: int, height: int, resize_mode: int) -> int:
    """The extension's pixel-perfect processor resolution: the detected map as large as the generation needs."""
    raw_h, raw_w = image.shape[:2]
    k0, k1 = float(height) / float(raw_h), float(width) / float(raw_w)
    chosen = min(k0, k1) if resize_mode == 2 else max(k0, k1)
    return int(np.round(chosen * float(min(raw_h, raw_w))))


def detect(unit: ControlUnit, picture: Image.Image, width: int, height: int, numpy_seed: int) -> Image.Image:
    """The unit's detected map of `picture` for a `width` x `height` generation, as an RGB picture; `numpy_seed`
    seeds the preprocessors that draw random numbers (shuffle), as extension_numpy_seed makes it."""
    image = hwc3(np.asarray(picture.convert("RGBA" if "A" in picture.getbands() else "RGB")))
    resolution = (
        pixel_perfect_resolution(image, width, height, unit.resize_mode) if unit.pixel_perfect else unit.processor_res
    )
    # parse_controlnet resolved -1 to the preprocessor's defaults; None only where it takes no threshold
    a = unit.threshold_a if unit.threshold_a is not None else 0.0
    b = unit.threshold_b if unit.threshold_b is not None else 0.0
    module = unit.module
    if module == "none":
        result = image
    elif module == "canny":
        result = canny(image, resolution, a, b)
    elif module == "invert":
        result = invert(image)
    elif module == "scribble_xdog":
        result = scribble_xdog(image, resolution, a)
    elif module == "threshold":
        result = threshold(image, resolution, a)
    elif module == "tile_resample":
        result = tile_resample(image, a)
    elif module == "blur_gaussian":
        result = blur_gaussian(image, resolution, a)
    elif module == "lineart_standard":
        result = lineart_standard(image, resolution)
    elif module == "shuffle":
        result = shuffle(image, resolution, numpy_seed)
    else:  # parse_controlnet lets no other name through
        raise ValueError(f"unknown preprocessor {module}")
    return Image.fromarray(hwc3(result))


def fit(detected: Image.Image, width: int, height: int, resize_mode: int) -> Image.Image:
    """The detected map fitted to the generation size as the extension fits it: 0 stretched, 1 scaled to cover
    and centre-cropped, 2 scaled to fit inside and centred on the median colour of its border."""
    if detected.size == (width, height):
        return detected
    if resize_mode == 0:
        return _resize(detected, width, height)
    k0, k1 = height / detected.height, width / detected.width
    if resize_mode == 1:
        k = max(k0, k1)
        scaled = _resize(detected, max(width, round(detected.width * k)), max(height, round(detected.height * k)))
        left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
        return scaled.crop((left, top, left + width, top + height))
    k = min(k0, k1)
    scaled = _resize(detected, round(detected.width * k), round(detected.height * k))
    pixels = np.asarray(detected)
    border = np.concatenate([pixels[0, :], pixels[-1, :], pixels[:, 0], pixels[:, -1]], axis=0)
    colour = tuple(int(value) for value in np.median(border, axis=0))
    canvas = Image.new("RGB", (width, height), colour)  # type: ignore[arg-type]
    canvas.paste(scaled, ((width - scaled.width) // 2, (height - scaled.height) // 2))
    return canvas


def _resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """The extension's high_quality_resize: nearest for maps of few colours (segmentation-like), area when
    shrinking, bicubic when enlarging; a black-and-white map (edges, scribbles) is thresholded back to black and
    white (Otsu), so it stays binary, and a map of one-pixel edges (most of its white pixels gone by an opening) is
    thinned back to one-pixel edges (thinning.py), its spurs pruned when it was enlarged."""
    pixels = np.asarray(image.convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    binary = bool(colours == 2 and pixels.min() < 16 and pixels.max() > 240)
    one_pixel_edges = False
    if binary:
        square = np.ones((3, 3), dtype=np.uint8)
        opened = cv2.dilate(cv2.erode(pixels, square, iterations=1), square, iterations=1)
        one_pixel_edges = bool(np.count_nonzero(opened < pixels) * 2 > np.count_nonzero(pixels > 127))
    if 2 < colours < 200:
        method = cv2.INTER_NEAREST
    elif width * height < image.width * image.height:
        method = cv2.INTER_AREA
    else:
        method = cv2.INTER_CUBIC
    resized = cv2.resize(pixels, (width, height), interpolation=method)
    if binary:
        grey = np.mean(resized.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
        if one_pixel_edges:
            grey = thinning.suppress_non_maxima(grey)
        _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if one_pixel_edges:
            grey = thinning.thin(grey, prune=width * height > image.width * image.height)
        resized = np.stack([grey] * 3, axis=2)
    return Image.fromarray(resized)
