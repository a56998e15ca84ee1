"""ControlNet through `alwayson_scripts.controlnet`, as sd-webui-controlnet reads it: units validated without torch,
the weight-free preprocessors as the extension computes them, ControlNet files in both layouts built to the loaded
checkpoint's UNet, and units on, off, at weight 0, outside their guidance range, two at once, and on SDXL."""

import io
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from inferences.engine.devtools import testing
from inferences.engine.errors import EngineError
from inferences.engine.features import preprocessors
from inferences.engine.request.controlnet_payload import PREPROCESSORS, parse_controlnet
from inferences.engine.request.limits import Limits
from inferences.engine.request.options import JobFiles
from inferences.engine.request.payload import parse_request
from inferences.engine.sampling import ksampling

from .conftest import model_file, png_b64, red_disc, txt2img

LIMITS = Limits()


def drawing(size: tuple[int, int] = (96, 80)) -> Image.Image:
    """Dark lines on white, as a sketch or line art comes."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((16, 12, 70, 60), outline="black", width=3)
    draw.line((0, 70, 95, 40), fill="black", width=2)
    return image


def unit(**overrides: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "enabled": True, "module": "canny", "model": "control_tiny_canny [8a1b2c3d]", "weight": 1.0,
        "image": png_b64(red_disc()), "resize_mode": "Crop and Resize", "processor_res": 64, "threshold_a": 100,
        "threshold_b": 200, "guidance_start": 0.0, "guidance_end": 1.0, "control_mode": "Balanced",
        "pixel_perfect": False, "low_vram": False, "is_ui": True, "input_mode": "simple", "save_detected_map": True,
    }  # fmt: skip
    spec.update(overrides)
    return spec


def with_units(*units: dict[str, object], **overrides: object) -> dict[str, object]:
    return txt2img(alwayson_scripts={"controlnet": {"args": list(units)}}, **overrides)


@pytest.fixture
def cn_files(models) -> JobFiles:
    return JobFiles(
        checkpoint=models["checkpoint"],
        checkpoints=(models["checkpoint"],),
        controlnets=(models["controlnet"], models["controlnet_diffusers"]),
    )


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


# --- the payload ---------------------------------------------------------------------------------------------------


def test_a_unit_is_read_as_the_extension_reads_it() -> None:
    request = parse_request("txt2img", with_units(unit(), unit(enabled=False), unit(model="None")), LIMITS)
    assert request.ignored == []
    [parsed] = request.control_units
    assert (parsed.model, parsed.module, parsed.resize_mode, parsed.control_mode) == (
        "control_tiny_canny",
        "canny",
        1,
        0,
    )
    assert (parsed.threshold_a, parsed.threshold_b, parsed.processor_res) == (100.0, 200.0, 64)
    assert request.named_models() == [("ControlNet", "control_tiny_canny", "alwayson_scripts.controlnet.args[0].model")]
    # -1 is the extension's "unset": the preprocessor's own default
    [default] = parse_request("txt2img", with_units(unit(threshold_a=-1, processor_res=-1)), LIMITS).control_units
    assert (default.threshold_a, default.processor_res) == (100.0, 512)
    # older clients send the picture as input_image, the WebUI's editor as {"image": ..., "mask": ...}
    [older] = parse_request(
        "txt2img", with_units(unit(image=None, input_image=png_b64(red_disc()))), LIMITS
    ).control_units
    assert older.image is not None and older.image.size == (96, 80)
    edited = parse_request("txt2img", with_units(unit(image={"image": png_b64(red_disc()), "mask": None})), LIMITS)
    assert edited.control_units[0].image is not None and edited.ignored == []
    [zero] = parse_request("txt2img", with_units(unit(module="threshold", threshold_a=0)), LIMITS).control_units
    assert zero.threshold_a == 0.0  # an explicit 0 is a threshold, not "unset"
    # modes by index, aliases of the extension's long names
    [indexed] = parse_controlnet(
        with_units(unit(resize_mode=2, control_mode=2, module="invert (from white bg & black line)")), "txt2img", LIMITS
    )[0]
    assert (indexed.resize_mode, indexed.control_mode, indexed.module) == (2, 2, "invert")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (unit(module="depth_leres"), "runs an annotator model whose weights this server does not have"),
        (unit(module="openpose_full"), "never downloads any"),
        (unit(module="ip-adapter_face_id_plus"), "annotator model"),
        (unit(module="my_magic"), "is not one this server runs; use one of none, canny"),
        (unit(image=None), "args[0] has no image"),
        (unit(weight=3), "args[0].weight must be a number from 0 to 2"),
        (unit(guidance_start=0.8, guidance_end=0.2), "guidance_start (0.8) is after its guidance_end (0.2)"),
        (unit(resize_mode="Stretch"), "resize_mode must be one of 'Just Resize', 'Crop and Resize'"),
        (unit(image="not an image"), "args[0].image is not valid base64"),
        # issue 26.12: the extension's slider ranges bound a payload too (a sigma of 1024 held a worker 130 s)
        (unit(module="blur_gaussian", threshold_a=1024), "args[0].threshold_a must be a number from 0.01 to 64"),
        (unit(threshold_b=256), "args[0].threshold_b must be a number from 1 to 255"),
        (unit(module="scribble_xdog", threshold_a=65), "threshold_a must be a number from 1 to 64"),
        (unit(module="tile_resample", threshold_a=9), "threshold_a must be a number from 1 to 8"),
        (unit(processor_res=4096), "processor_res must be an integer from 64 to 2048"),
    ],
)
def test_a_unit_that_cannot_run_is_refused_with_its_key(spec: dict[str, object], message: str) -> None:
    with pytest.raises(EngineError, match=re.escape(message)):
        parse_request("txt2img", with_units(spec), LIMITS)


def test_an_img2img_unit_without_an_image_takes_the_init_image() -> None:
    payload = with_units(unit(image=None), init_images=[png_b64(red_disc())], denoising_strength=0.5)
    [parsed] = parse_request("img2img", payload, LIMITS).control_units
    assert parsed.image is None


# --- preprocessors (each as the extension computes it) --------------------------------------------------------------


def detect(module: str, image: Image.Image, **overrides: object) -> np.ndarray:
    """The module's map of `image` at the preprocessor's own thresholds unless `overrides` set them."""
    spec = {**unit(module=module, image=png_b64(image), threshold_a=-1, threshold_b=-1), **overrides}
    [parsed] = parse_controlnet(with_units(spec), "txt2img", LIMITS)[0]
    return np.asarray(preprocessors.detect(parsed, parsed.image, 64, 64, numpy_seed=1234)).astype(int)


def test_every_weight_free_preprocessor_has_a_test_here() -> None:
    tested = {"none", "canny", "invert", "scribble_xdog", "threshold", "tile_resample", "blur_gaussian",
              "lineart_standard", "shuffle"}  # fmt: skip
    assert set(PREPROCESSORS) == tested


def test_none_passes_the_image_through() -> None:
    image = red_disc()
    assert np.array_equal(detect("none", image), np.asarray(image))


def test_canny_is_opencvs_at_the_processor_resolution() -> None:
    image = red_disc((96, 80))
    result = detect("canny", image, processor_res=80, threshold_a=50, threshold_b=150)
    expected = cv2.Canny(np.asarray(image), 50, 150)  # 80 is already the short side: no resize, no padding
    assert result.shape == (80, 96, 3) and np.array_equal(result[:, :, 0], expected)
    assert result[40, 10].sum() == 0 and result.max() == 255  # flat blue: no edge; the disc's rim: edges


def test_invert_turns_dark_lines_on_white_into_white_on_black() -> None:
    image = drawing()
    result = detect("invert", image, processor_res=80)
    assert np.array_equal(result, 255 - np.asarray(image))


def test_invert_works_at_the_inputs_own_size() -> None:
    """The extension's PreprocessorInvert returns `255 - HWC3(input_image)` and takes no resolution
    (scripts/preprocessor/model_free_preprocessors.py, 56cec5b): a small processor_res changes nothing."""
    image = drawing((150, 90))
    result = detect("invert", image, processor_res=64)
    assert result.shape == (90, 150, 3) and np.array_equal(result, 255 - np.asarray(image))


def test_scribble_xdog_is_binary_with_lines_where_the_drawing_has_them() -> None:
    result = detect("scribble_xdog", drawing(), processor_res=80)
    assert set(np.unique(result)) == {0, 255}
    assert result[12, 40].max() == 255 and result[35, 45].max() == 0  # on the rectangle's edge / inside it


def test_threshold_whitens_exactly_the_pixels_brighter_than_it() -> None:
    image = red_disc()
    result = detect("threshold", image, processor_res=80, threshold_a=20)
    expected = np.where(np.asarray(image).min(axis=2) > 20, 255, 0)
    assert np.array_equal(result[:, :, 0], expected)


def test_tile_resample_shrinks_by_its_factor_and_leaves_factor_one_alone() -> None:
    image = red_disc((96, 80))
    assert detect("tile_resample", image, threshold_a=2.0).shape == (40, 48, 3)
    assert np.array_equal(detect("tile_resample", image, threshold_a=1.0), np.asarray(image))


def test_blur_gaussian_smooths_by_its_sigma() -> None:
    image = red_disc((96, 80))
    soft, softer = (
        detect("blur_gaussian", image, processor_res=80, threshold_a=2),
        detect("blur_gaussian", image, processor_res=80, threshold_a=8),
    )
    sharpness = [
        np.abs(np.diff(array[:, :, 0], axis=1)).max() for array in (np.asarray(image).astype(int), soft, softer)
    ]
    assert sharpness[0] > sharpness[1] > sharpness[2]


def test_lineart_standard_marks_the_lines_of_a_drawing() -> None:
    result = detect("lineart_standard", drawing(), processor_res=80)
    assert result[12, 40].max() > 100 and result[35, 45].max() == 0 and result[2, 2].max() == 0


def extension_shuffle(image: np.ndarray, resolution: int, seed: int, subseed: int, first_seed: int) -> np.ndarray:
    """sd-webui-controlnet 56cec5b, transcribed: set_numpy_seed (scripts/controlnet.py: -1 → all_seeds[0], others
    max(x, 0), their sum & 0xFFFFFFFF into np.random.seed), PreprocessorShuffle (resize_image_with_pad, then
    remove_pad, then ContentShuffleDetector: make_noise_disk(H, W, 1, 256) twice from np.random.uniform, cv2.remap)."""
    state = np.random.RandomState(
        ((first_seed if seed == -1 else max(seed, 0)) + (first_seed if subseed == -1 else max(subseed, 0))) & 0xFFFFFFFF
    )
    padded, remove_pad = preprocessors.resize_with_pad(image, resolution)
    picture = remove_pad(padded)
    height, width = picture.shape[:2]

    def noise_disk() -> np.ndarray:
        noise = state.uniform(low=0, high=1, size=((height // 256) + 2, (width // 256) + 2, 1))
        noise = cv2.resize(noise, (width + 512, height + 512), interpolation=cv2.INTER_CUBIC)[
            256 : 256 + height, 256 : 256 + width
        ]
        noise -= np.min(noise)
        noise /= np.max(noise)
        return noise[:, :, None]

    flow = np.concatenate([noise_disk() * float(width - 1), noise_disk() * float(height - 1)], axis=2)
    return cv2.remap(picture, flow.astype(np.float32), None, cv2.INTER_LINEAR)


@pytest.mark.parametrize(
    ("seed", "subseed", "first_seed"), [(1234, -1, 1234), (-1, -1, 777), (5, 99, 5), (4294967295, 7, 4294967295)]
)
def test_shuffle_is_the_extensions_for_the_payloads_seeds(seed: int, subseed: int, first_seed: int) -> None:
    image = red_disc((96, 80))
    [parsed] = parse_controlnet(with_units(unit(module="shuffle", processor_res=72)), "txt2img", LIMITS)[0]
    numpy_seed = preprocessors.extension_numpy_seed(first_seed, seed, subseed)
    ours = np.asarray(preprocessors.detect(parsed, image, 64, 64, numpy_seed))
    expected = extension_shuffle(np.asarray(image), 72, seed, subseed, first_seed)
    assert ours.shape == expected.shape == (72, 86, 3) and np.array_equal(ours, expected)


def test_shuffle_rearranges_the_pictures_own_pixels_by_the_seed() -> None:
    image = red_disc()
    [parsed] = parse_controlnet(with_units(unit(module="shuffle", processor_res=80)), "txt2img", LIMITS)[0]
    one, again, other = (np.asarray(preprocessors.detect(parsed, image, 64, 64, seed)) for seed in (1, 1, 2))
    assert np.array_equal(one, again) and not np.array_equal(one, other)
    assert not np.array_equal(one, np.asarray(image))
    # remapped, not repainted: every pixel blends the picture's two colours, blue (30, 40, 200) and red (250, 0, 0),
    # so it lies on the line between them, where R + 5.5 G = 250
    line = one[:, :, 0].astype(float) + 5.5 * one[:, :, 1]
    assert np.abs(line - 250).max() < 4


def extension_high_quality_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """sd-webui-controlnet 56cec5b's high_quality_resize for a 3-channel binary map, transcribed (scripts/controlnet.py
    and scripts/lvminthin.py): one-pixel edges when an erode-dilate opening removes more than half the white
    entries; bicubic up; channel mean; nake_nms; Otsu; lvmin_thin (32 rounds of 8 hit-or-miss kernels, then one of 8
    pruning kernels when enlarged)."""

    def turns(*raw: list[list[int]]) -> list[np.ndarray]:
        arrays = [np.array(kernel, dtype=np.int32) for kernel in raw]
        return [np.rot90(kernel, k=k, axes=(0, 1)) for k in range(4) for kernel in arrays]

    kernels = turns([[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]])
    prunings = turns([[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]])

    def one_round(y: np.ndarray, patterns: list[np.ndarray]) -> bool:
        done = True
        for kernel in patterns:
            objects = np.where(cv2.morphologyEx(y, cv2.MORPH_HITMISS, kernel) > 127)
            y[objects] = 0
            done = done and objects[0].shape[0] == 0
        return done

    xc = cv2.dilate(cv2.erode(x, np.ones((3, 3), np.uint8), iterations=1), np.ones((3, 3), np.uint8), iterations=1)
    assert np.where(xc < x)[0].shape[0] * 2 > np.where(x > 127)[0].shape[0]  # one-pixel edges
    y = cv2.resize(x, size, interpolation=cv2.INTER_CUBIC)
    y = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
    nms = np.zeros_like(y)
    for f in ([[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0], [0, 1, 0], [0, 1, 0]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
              [[0, 0, 1], [0, 1, 0], [1, 0, 0]]):  # fmt: skip
        np.putmask(nms, cv2.dilate(y, kernel=np.array(f, dtype=np.uint8)) == y, y)
    _, y = cv2.threshold(nms, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    for _ in range(32):
        if one_round(y, kernels):
            break
    one_round(y, prunings)
    return np.stack([y] * 3, axis=2)


def test_an_enlarged_map_of_one_pixel_edges_is_thinned_as_the_extension_thins_it() -> None:
    edges = cv2.Canny(np.asarray(red_disc((60, 48))), 100, 200)
    small = np.stack([edges] * 3, axis=2)
    fitted = np.asarray(preprocessors.fit(Image.fromarray(small), 150, 120, resize_mode=0))
    assert np.array_equal(fitted, extension_high_quality_resize(small, (150, 120)))
    assert set(np.unique(fitted)) == {0, 255}
    plain = cv2.resize(small, (150, 120), interpolation=cv2.INTER_CUBIC).mean(axis=2).astype(np.uint8)
    _, banded = cv2.threshold(plain, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert np.count_nonzero(fitted[:, :, 0]) < np.count_nonzero(banded) * 0.75  # a band thinned back to lines


@pytest.mark.parametrize(
    ("module", "mode", "first", "second"),
    [("canny", "Balanced", False, True), ("threshold", "Balanced", False, False), ("none", "Balanced", False, False),
     ("invert", "My prompt is more important", True, True)],
)  # fmt: skip
def test_canny_and_mlsd_units_inject_softly_in_the_hires_pass(module, mode, first, second) -> None:
    """sd-webui-controlnet's hook.py (56cec5b): in a hires fix's second pass a unit whose preprocessor's name holds
    'canny' or 'mlsd' takes the soft scales (0.825 ** (12 - i)) whatever its control mode; elsewhere only a control
    mode other than Balanced does."""
    import torch

    from inferences.engine.features.controlnet import PreparedUnit

    [parsed] = parse_controlnet(with_units(unit(module=module, control_mode=mode)), "txt2img", LIMITS)[0]
    prepared = PreparedUnit(parsed, model=None, file=None, detected=red_disc((64, 64)))  # type: ignore[arg-type]
    passes = [prepared.active(64, 64, torch.device("cpu"), torch.float32, second_pass=hires) for hires in (False, True)]
    assert [active.soft for active in passes] == [first, second]


def test_pixel_perfect_sizes_the_map_for_the_generation() -> None:
    image = np.zeros((80, 96, 3), dtype=np.uint8)
    assert preprocessors.pixel_perfect_resolution(image, 128, 128, resize_mode=1) == 128  # cover: max ratio
    assert preprocessors.pixel_perfect_resolution(image, 128, 128, resize_mode=2) == 107  # fit: min ratio x 80


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_the_map_is_fitted_to_the_generation_size(mode: int) -> None:
    fitted = preprocessors.fit(red_disc((96, 48)), 64, 64, mode)
    assert fitted.size == (64, 64)
    top = np.asarray(fitted)[0, 32]
    if mode == 2:  # resized to fit and centred on the border's colour (the blue background)
        assert tuple(top) == (30, 40, 200)


# --- the engine ----------------------------------------------------------------------------------------------------


def test_a_unit_changes_the_picture_and_weight_0_or_guidance_start_1_equals_none(engine, cn_files) -> None:
    off = engine.run("txt2img", txt2img(steps=4), cn_files)
    on = engine.run("txt2img", with_units(unit(), steps=4), cn_files)
    assert on.ignored == []
    assert np.abs(pixels(on.images[0]) - pixels(off.images[0])).max() > 10
    assert len(on.images) == 2  # the picture, then the detected map (save_detected_map), as the extension returns it
    assert Image.open(io.BytesIO(on.images[1])).size == (77, 64)  # the 96x80 input's map at processor_res 64
    for spec in (unit(weight=0), unit(guidance_start=1.0)):
        quiet = engine.run("txt2img", with_units(spec, steps=4), cn_files)
        assert np.array_equal(pixels(quiet.images[0]), pixels(off.images[0])), spec


def test_guidance_start_and_end_bound_the_steps_a_unit_guides(engine, cn_files, monkeypatch) -> None:
    guided: list[int] = []
    original = ksampling.ControlPass.residuals

    def spy(self, *args):
        answer = original(self, *args)
        if answer is not None:
            guided.append(self.step)
        return answer

    monkeypatch.setattr(ksampling.ControlPass, "residuals", spy)
    engine.run("txt2img", with_units(unit(guidance_start=0.25, guidance_end=0.75), steps=8), cn_files)
    assert sorted(set(guided)) == extension_guided_steps(0.25, 0.75, 8) == [3, 4, 5, 6, 7]
    guided.clear()
    engine.run("txt2img", with_units(unit(guidance_end=0.0), steps=4), cn_files)
    assert sorted(set(guided)) == extension_guided_steps(0.0, 0.0, 4) == [0, 1]


def extension_guided_steps(start: float, end: float, steps: int) -> list[int]:
    """Issue 30.16. sd-webui-controlnet 56cec5b, scripts/hook.py guidance_schedule_handler, run before each model
    evaluation: `current_sampling_percent = x.sampling_step / x.total_sampling_steps; guidance_stopped = current <
    start or current > end`, with A1111's state.sampling_step 0 at launch_sampling and set to d['i'] by
    callback_state after step i (sd_samplers_common.py)."""
    guided, sampling_step = [], 0
    for i in range(steps):
        current = sampling_step / steps
        if not (current < start or current > end):
            guided.append(i)
        sampling_step = i  # the callback after step i
    return guided


def test_both_layouts_load_and_two_units_combine(engine, cn_files, models) -> None:
    one = engine.run("txt2img", with_units(unit(), steps=3), cn_files)
    diffusers_layout = unit(model="tiny-depth-diffusers", module="none")
    other = engine.run("txt2img", with_units(diffusers_layout, steps=3), cn_files)
    both = engine.run("txt2img", with_units(unit(), diffusers_layout, steps=3), cn_files)
    assert both.ignored == [] and len(both.images) == 3  # the picture and both maps
    first, second, combined = (pixels(result.images[0]) for result in (one, other, both))
    assert not np.array_equal(combined, first) and not np.array_equal(combined, second)
    text = Image.open(io.BytesIO(both.images[0])).info["parameters"]
    assert 'ControlNet 0: "Module: canny, Model: control_tiny_canny [' in text
    assert (
        f'ControlNet 1: "Module: none, Model: tiny-depth-diffusers [{models["controlnet_diffusers"].sha256[:8]}]'
        in text
    )


def test_the_original_layout_converts_to_the_same_model_as_the_diffusers_one(engine, models, tmp_path: Path) -> None:
    import torch

    from inferences.engine.features.controlnet import load_controlnet
    from inferences.engine.models.loading import load_model
    from inferences.engine.request.options import EngineOptions

    model = load_model(models["checkpoint"], None, EngineOptions())
    original = model_file(testing.write_tiny_controlnet(tmp_path / "a.safetensors", layout="ldm", seed=21))
    diffusers = model_file(testing.write_tiny_controlnet(tmp_path / "b.safetensors", layout="diffusers", seed=21))
    left, right = (load_controlnet(file, model.base.unet, "tiny").state_dict() for file in (original, diffusers))
    assert left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


def test_control_modes_weigh_the_residuals_as_the_extension_does(engine, cn_files) -> None:
    results = {
        mode: pixels(engine.run("txt2img", with_units(unit(control_mode=mode), steps=3), cn_files).images[0])
        for mode in ("Balanced", "My prompt is more important", "ControlNet is more important")
    }
    assert len({array.tobytes() for array in results.values()}) == 3


def test_a_missing_model_or_a_foreign_controlnet_is_a_clear_failure(engine, cn_files, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="names 'control_v11p_sd15_canny', but the job's ControlNet models are: "):
        engine.run("txt2img", with_units(unit(model="control_v11p_sd15_canny")), cn_files)
    xl = model_file(testing.write_tiny_controlnet(tmp_path / "xl-canny.safetensors", arch="sdxl", layout="diffusers"))
    files = JobFiles(checkpoint=cn_files.checkpoint, controlnets=(xl,))
    with pytest.raises(EngineError, match=r"the ControlNet xl-canny\.safetensors does not fit this checkpoint"):
        engine.run("txt2img", with_units(unit(model="xl-canny")), files)


def test_an_img2img_unit_guides_from_the_init_image(engine, cn_files) -> None:
    payload = with_units(unit(image=None), init_images=[png_b64(red_disc())], denoising_strength=0.6, steps=4)
    plain = txt2img(init_images=[png_b64(red_disc())], denoising_strength=0.6, steps=4)
    on, off = engine.run("img2img", payload, cn_files), engine.run("img2img", plain, cn_files)
    assert not np.array_equal(pixels(on.images[0]), pixels(off.images[0]))


def test_an_sdxl_controlnet_guides_an_sdxl_checkpoint(engine, tmp_path: Path) -> None:
    from inferences.engine.devtools.tiny import write_tiny_checkpoint

    checkpoint = model_file(write_tiny_checkpoint(tmp_path / "tiny-xl.safetensors", arch="sdxl"))
    controlnet = model_file(
        testing.write_tiny_controlnet(tmp_path / "xl-canny.safetensors", arch="sdxl", layout="diffusers")
    )
    files = JobFiles(checkpoint=checkpoint, controlnets=(controlnet,))
    off = engine.run("txt2img", txt2img(steps=3), files)
    on = engine.run("txt2img", with_units(unit(model="xl-canny"), steps=3), files)
    assert on.ignored == [] and np.abs(pixels(on.images[0]) - pixels(off.images[0])).max() > 10
    # and the hires fix on SDXL, the unit guiding both passes
    hires = engine.run(
        "txt2img",
        with_units(unit(model="xl-canny"), steps=3, enable_hr=True, hr_scale=2, denoising_strength=0.5),
        files,
    )
    assert hires.ignored == [] and Image.open(io.BytesIO(hires.images[0])).size == (128, 128)
    original = model_file(testing.write_tiny_controlnet(tmp_path / "xl-ldm.safetensors", arch="sdxl", layout="ldm"))
    with pytest.raises(EngineError, match="SDXL ControlNet in the original layout"):
        engine.run(
            "txt2img", with_units(unit(model="xl-ldm")), JobFiles(checkpoint=checkpoint, controlnets=(original,))
        )


def test_the_memory_estimate_counts_the_units_controlnets(cn_files, models, u2net_home) -> None:
    from inferences.engine.request.identify import header_entries
    from inferences.engine.request.memory import ModelShape, estimate, parameter_count
    from inferences.engine.request.options import EngineOptions
    from inferences.engine.runner import Engine

    shape = ModelShape.of("tiny", header_entries(models["checkpoint"].path))
    alone = estimate(shape, 64, 64, 1, 4).total
    controlnet_bytes = parameter_count(header_entries(models["controlnet"].path)) * 4
    engine = Engine(EngineOptions(u2net_home=u2net_home, memory_bytes=alone + controlnet_bytes // 2))
    assert engine.run("txt2img", txt2img(steps=2), cn_files).images
    with pytest.raises(EngineError, match="this job needs about"):
        engine.run("txt2img", with_units(unit(), steps=2), cn_files)
    # two units of one ControlNet hold its weights once: a budget with room for one copy runs them
    budget = alone + controlnet_bytes + controlnet_bytes // 2
    roomy = Engine(EngineOptions(u2net_home=u2net_home, memory_bytes=budget))
    assert roomy.run("txt2img", with_units(unit(), unit(weight=0.5), steps=2), cn_files).images
