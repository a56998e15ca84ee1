"""Inpainting as A1111 prepares and composes it (issue 30.15). Expected values are worked out by hand from A1111
v1.10.1's code, as each test says: processing.py (create_binary_mask, StableDiffusionProcessingImg2Img.init,
apply_overlay, uncrop) and masking.py (get_crop_region_v2, expand_crop_region, fill)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inferences.engine.features import masking
from inferences.engine.request.options import JobFiles

from .conftest import png_b64, red_disc


def test_an_rgba_mask_is_its_alpha_cut_at_128():
    """create_binary_mask: an RGBA mask whose alpha is not all 255 is its alpha channel, > 128 → 255; colours do
    not count (a white pixel at alpha 100 is not painted, a black one at alpha 200 is)."""
    mask = Image.new("RGBA", (4, 1))
    for x, pixel in enumerate([(255, 255, 255, 100), (0, 0, 0, 200), (255, 255, 255, 129), (9, 9, 9, 128)]):
        mask.putpixel((x, 0), pixel)
    assert np.asarray(masking.binary_mask(mask)).ravel().tolist() == [0, 255, 255, 0]
    opaque = Image.new("RGBA", (2, 1), (200, 200, 200, 255))  # alpha all 255: the grey levels
    assert np.asarray(masking.binary_mask(opaque)).ravel().tolist() == [200, 200]


def test_the_blur_is_cv2s_per_axis_with_a1111s_kernel():
    """mask_blur_x = 4: cv2.GaussianBlur with kernel (2 * int(2.5 * 4 + 0.5) + 1, 1) = (21, 1), so a one-pixel line
    spreads exactly 10 pixels to each side along x and not at all along y."""
    mask = Image.new("L", (41, 9))
    ImageDraw.Draw(mask).line((20, 0, 20, 8), fill=255)
    spread = np.asarray(masking.blur(mask, 4, 0))
    assert np.nonzero(spread[4])[0].tolist() == list(range(10, 31))
    assert (spread == spread[0]).all()  # every row alike: nothing along y
    assert np.nonzero(np.asarray(masking.blur(mask.transpose(Image.Transpose.TRANSPOSE), 0, 4))[:, 4])[
        0
    ].tolist() == list(range(10, 31))


@pytest.mark.parametrize(
    ("box", "padding", "target", "expected"),
    [
        # a 64x32 box for a square picture: desired height 64, 32 more rows, 16 above and 16 below
        ((100, 200, 164, 232), 0, (64, 64), (100, 184, 164, 248)),
        # padded by 8: (92, 192, 172, 240), 80x48, 32 more rows
        ((100, 200, 164, 232), 8, (64, 64), (92, 176, 172, 256)),
        # at the bottom: moved up to stay inside the 512-pixel picture
        ((100, 480, 164, 512), 0, (64, 64), (100, 448, 164, 512)),
        # a tall box for a wide picture (2:1): desired width 2 x 64 = 128, 96 more columns, 48 each side, moved right
        ((10, 10, 42, 74), 0, (128, 64), (0, 10, 128, 74)),
    ],
)
def test_the_crop_region_is_a1111s(box, padding, target, expected):
    mask = Image.new("L", (512, 512))
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    region = masking.crop_region(mask, padding)
    assert masking.expand_crop_region(region, *target, 512, 512) == expected
    assert masking.crop_region(Image.new("L", (8, 8)), 4) is None  # blank: A1111 drops "Only masked"


def test_every_fill_but_original_fills_the_picture_before_encoding():
    """init: `if self.inpainting_fill != 1: image = masking.fill(image, latent_mask)`, for 0, 2 and 3 alike: the
    painted area takes the colours around it (a blue disc under the mask becomes red)."""
    picture = Image.new("RGB", (64, 64), (250, 0, 0))
    ImageDraw.Draw(picture).ellipse((24, 24, 40, 40), fill=(0, 0, 250))
    mask = Image.new("L", (64, 64))
    ImageDraw.Draw(mask).ellipse((20, 20, 44, 44), fill=255)
    for fill in (0, 2, 3):
        frame = masking.prepare([picture], mask, 64, 64, resize_mode=0, invert=False, blur_x=0, blur_y=0,
                                inpainting_fill=fill, only_masked=False, padding=0)  # fmt: skip
        red, _, blue = frame.sources[0].getpixel((32, 32))
        assert red > 200 and blue < 50
    kept = masking.prepare([picture], mask, 64, 64, resize_mode=0, invert=False, blur_x=0, blur_y=0,
                           inpainting_fill=1, only_masked=False, padding=0)  # fmt: skip
    assert kept.sources[0].getpixel((32, 32)) == (0, 0, 250)


def test_the_whole_picture_composite_doubles_the_mask():
    """Whole picture: mask_for_overlay = clip(2 x mask), the original laid over the generated picture with alpha
    255 - that: where the blurred mask is 64 the original keeps 127/255, where it is 128 or more nothing."""
    original = Image.new("RGB", (3, 1), (200, 0, 0))
    mask = Image.new("L", (3, 1))
    for x, value in enumerate([0, 64, 128]):
        mask.putpixel((x, 0), value)
    frame = masking.prepare([original], mask, 3, 1, resize_mode=0, invert=False, blur_x=0, blur_y=0,
                            inpainting_fill=1, only_masked=False, padding=0)  # fmt: skip
    composed = frame.compose(Image.new("RGB", (3, 1), (0, 0, 100)), 0)
    kept, half, painted = (composed.getpixel((x, 0)) for x in range(3))
    assert kept == (200, 0, 0) and painted == (0, 0, 100)
    alpha = (255 - 128) / 255  # A1111's alpha over the generated picture; PIL's 8-bit rounding within one level
    assert all(abs(a - b) <= 1 for a, b in zip(half, (200 * alpha, 0, 100 * (1 - alpha)), strict=True))


def test_only_masked_generates_the_crop_and_puts_it_back(engine, models):
    """A1111's API default ("Only masked", padding 0): the painted box grown to the job's aspect ratio is generated
    at width x height and put back (uncrop) into the init picture at its own size; outside that box every pixel is
    the original's."""
    files = JobFiles(checkpoint=models["checkpoint"])
    source = red_disc((128, 96))
    mask = Image.new("L", (128, 96))
    ImageDraw.Draw(mask).rectangle((40, 30, 55, 45), fill=255)  # 16x16 → region (40, 30, 56, 46), square already
    payload = {"prompt": "x", "init_images": [png_b64(source)], "mask": png_b64(mask), "mask_blur": 0,
               "denoising_strength": 1.0, "inpainting_fill": 2, "steps": 3, "width": 64, "height": 64, "seed": 5,
               "sampler_name": "Euler"}  # fmt: skip
    result = engine.run("img2img", payload, files)
    [(picture, _)] = result.pictures
    assert picture.size == (128, 96)  # the init picture's size, not 64 x 64
    out, original = np.asarray(picture).astype(int), np.asarray(source).astype(int)
    outside = np.ones((96, 128), bool)
    outside[30:46, 40:56] = False
    assert np.array_equal(out[outside], original[outside])
    assert np.abs(out[32:44, 42:54] - original[32:44, 42:54]).max() > 20
    assert (
        "Inpaint area: Only masked, Masked area padding: 0, Masked content: latent noise" in result.info["infotexts"][0]
    )
    whole = engine.run("img2img", payload | {"inpaint_full_res": 0}, files)  # A1111's UI sends the radio's index
    assert whole.pictures[0][0].size == (64, 64) and "Inpaint area" not in whole.info["infotexts"][0]
    blank = engine.run("img2img", payload | {"mask": png_b64(Image.new("L", (128, 96)))}, files)
    assert blank.pictures[0][0].size == (64, 64)  # nothing painted: A1111 runs plain img2img
    assert "Masked content" not in blank.info["infotexts"][0]
