"""Images in and out: base64 decoding with size guards, A1111's resize modes and mask handling, PNG with infotext.

Pillow only (no torch), so the web process can validate payloads with the same code the worker runs.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..errors import EngineError

# Formats a client may send; anything else (and every format's plugin quirks) stays out of reach.
INPUT_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
SOURCE = "esd.source"  # the key of Image.info holding the bytes a picture was decoded from


def decode_image(value: object, field: str, *, max_pixels: int, max_bytes: int) -> Image.Image:
    """A base64 image (bare or as a data: URI) → a PIL image opened from its header (size, format), refusing bombs
    before anything is decoded: the pixels stay compressed until `load_image`."""
    if not isinstance(value, str) or not value:
        raise EngineError(f"{field} must be a base64-encoded image (PNG, JPEG or WebP)")
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(data) > max_bytes * 4 // 3 + 4:
        raise EngineError(f"{field} is larger than {max_bytes // (1024 * 1024)} MiB")
    try:
        raw = base64.b64decode(data)
    except (binascii.Error, ValueError) as exc:
        raise EngineError(f"{field} is not valid base64") from exc
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw), formats=INPUT_FORMATS)
            image.info[SOURCE] = raw  # what the client sent, stored as it is when the job is planned
            width, height = image.size
            if width * height > max_pixels:
                raise EngineError(f"{field} is {width}x{height} pixels; at most {max_pixels} pixels are accepted")
    except EngineError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise EngineError(
            f"{field} has more than {max_pixels} pixels; at most {max_pixels} pixels are accepted"
        ) from exc
    except UnidentifiedImageError as exc:
        raise EngineError(f"{field} is not an image this server reads (PNG, JPEG, WebP, BMP or GIF)") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise EngineError(f"{field} is a damaged or truncated image") from exc
    return image


def source_bytes(image: Image.Image) -> bytes:
    """The bytes a picture was sent as (decode_image keeps them); a picture made here, as PNG."""
    raw = image.info.get(SOURCE)
    if isinstance(raw, bytes):
        return raw
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_image(image: Image.Image, field: str) -> None:
    """Decode the pixels of an image `decode_image` opened (its size already checked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise EngineError(f"{field} is a damaged or truncated image") from exc


def flatten(image: Image.Image, background: str = "#ffffff") -> Image.Image:
    """A1111's images.flatten with its img2img_background_color (white): a transparent picture is laid on the
    background rather than having its alpha dropped (which leaves whatever colour the invisible pixels hold)."""
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, background)
        canvas.paste(image, mask=image)
        image = canvas
    return image.convert("RGB")


def resize(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """A1111's images.resize_image without an img2img upscaler (its default, Lanczos): 0 just resize, 1 crop and
    resize, 2 resize and fill (3, latent upscale: as 0), with A1111's integer sizes and offsets. Mode 2 fills the
    bands beside the picture with its edge rows or columns stretched, as A1111 does (issue 30.14)."""
    image = image.convert("RGB")
    lanczos = Image.Resampling.LANCZOS
    if mode not in (1, 2):
        return image.resize((width, height), lanczos)
    ratio, source = width / height, image.width / image.height
    wider = ratio > source if mode == 1 else ratio < source  # the side that meets the box exactly
    taller = ratio <= source if mode == 1 else ratio >= source
    src_w = width if wider else image.width * height // image.height
    src_h = height if taller else image.height * width // image.width
    resized = image.resize((src_w, src_h), lanczos)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if mode == 2 and ratio < source and (band := height // 2 - src_h // 2) > 0:
        canvas.paste(resized.resize((width, band), box=(0, 0, width, 0)), box=(0, 0))
        canvas.paste(resized.resize((width, band), box=(0, src_h, width, src_h)), box=(0, band + src_h))
    elif mode == 2 and ratio > source and (band := width // 2 - src_w // 2) > 0:
        canvas.paste(resized.resize((band, height), box=(0, 0, 0, height)), box=(0, 0))
        canvas.paste(resized.resize((band, height), box=(src_w, 0, src_w, height)), box=(band + src_w, 0))
    return canvas


def png_bytes(image: Image.Image, parameters: str | None = None) -> bytes:
    """PNG with A1111's `parameters` text chunk, which A1111's "PNG Info" and most tools read back."""
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("parameters", parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def png_parameters(data: bytes) -> str | None:
    """The A1111 `parameters` text a picture carries (what its PNG Info reads), or None: not a picture Pillow
    reads, or none written."""
    try:
        with Image.open(io.BytesIO(data)) as picture:
            text = picture.info.get("parameters")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return text if isinstance(text, str) and text.strip() else None


# PNG encoding is zlib's deflate, which Pillow runs without the GIL: a batch's pictures encode side by side (at 512x512
# about 40 ms each, serial, was a fifth of a batch-8 job on an H200: issue 28). Threads, not processes: the pictures
# are not copied. Shared by every job of the process, a few threads at most.
_ENCODERS = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="png-encode")


def png_files(pictures: Sequence[tuple[Image.Image, str | None]]) -> list[bytes]:
    """Each (picture, parameters) as png_bytes makes it, the pictures encoded in parallel, in their order."""
    if len(pictures) <= 1:
        return [png_bytes(image, text) for image, text in pictures]
    return list(_ENCODERS.map(lambda picture: png_bytes(*picture), pictures))
