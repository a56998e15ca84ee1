"""`alwayson_scripts.controlnet.args` → validated ControlNet units, as sd-webui-controlnet's API reads them.

No torch or OpenCV here: the web process refuses a unit it cannot run (an unknown preprocessor, one that needs
annotator weights, a bad image) at `start`, with the same code the worker runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..errors import EngineError
from .images import decode_image
from .reader import Reader

MAX_UNITS = 8

# sd-webui-controlnet's resize modes and control modes, by name or by index.
RESIZE_MODES = {"Just Resize": 0, "Crop and Resize": 1, "Resize and Fill": 2}
CONTROL_MODES = {"Balanced": 0, "My prompt is more important": 1, "ControlNet is more important": 2}
HR_OPTIONS = ("Both", "Low res only", "High res only")


@dataclass(frozen=True)
class Slider:
    """One of the extension's preprocessor sliders: its default (used for -1) and its range. The range bounds what
    a payload may ask as well: a Gaussian blur's sigma of 1024 on a 2048-pixel map held a worker 130 s."""

    default: float
    low: float
    high: float


@dataclass(frozen=True)
class Preprocessor:
    """A preprocessor that needs no downloaded weights, with its sliders (sd-webui-controlnet's
    preprocessor_compiled.py)."""

    resolution: bool = True  # whether processor_res applies
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None


PREPROCESSORS: dict[str, Preprocessor] = {
    "none": Preprocessor(resolution=False),
    "canny": Preprocessor(threshold_a=Slider(100, 1, 255), threshold_b=Slider(200, 1, 255)),
    "invert": Preprocessor(),
    "scribble_xdog": Preprocessor(threshold_a=Slider(32, 1, 64)),
    "threshold": Preprocessor(threshold_a=Slider(127, 0, 255)),
    "tile_resample": Preprocessor(resolution=False, threshold_a=Slider(1.0, 1.0, 8.0)),
    "blur_gaussian": Preprocessor(threshold_a=Slider(9.0, 0.01, 64.0)),
    "lineart_standard": Preprocessor(),
    "shuffle": Preprocessor(),
}
ALIASES = {
    "None": "none",
    "invert (from white bg & black line)": "invert",
    "lineart_standard (from white bg & black line)": "lineart_standard",
}
# The extension's preprocessors that run a downloaded annotator model (depth, pose, HED, segmentation, CLIP/IP-
# Adapter encoders, ...): named in the failure, never downloaded.
NEEDS_WEIGHTS = (
    "depth", "normal", "openpose", "dw_openpose", "animal_openpose", "densepose", "lineart_realistic",
    "lineart_coarse", "lineart_anime", "softedge", "scribble_hed", "scribble_pidinet", "mlsd", "seg_", "mediapipe",
    "clip_vision", "ip-adapter", "t2ia", "revision", "instant_id", "inpaint_only+lama", "tile_colorfix", "hed",
    "pidinet", "leres", "midas", "zoe", "anime_face", "facexlib", "invert_lama",
)  # fmt: skip
# Unit keys that only steer the extension's UI or its batch modes; they do not change a picture.
UI_KEYS = {
    "is_ui", "input_mode", "batch_images", "output_dir", "loopback", "low_vram", "use_preview_as_input",
    "batch_image_dir", "batch_mask_dir", "batch_input_gallery", "batch_mask_gallery", "generated_image",
    "mask_image", "hr_option", "save_detected_map", "enabled", "module", "model", "weight", "image", "input_image",
    "mask", "resize_mode", "processor_res", "threshold_a", "threshold_b", "guidance_start", "guidance_end",
    "control_mode", "pixel_perfect", "inpaint_crop_input_image", "animatediff_batch", "batch_modifiers",
    "union_control_type", "advanced_weighting", "ipadapter_input", "effective_region_mask", "pulid_mode",
}  # fmt: skip
NEUTRAL: tuple[Any, ...] = (None, False, "", "None", "Unknown", 0, [], {})


@dataclass
class ControlUnit:
    """One enabled ControlNet unit, validated; `image` None means the img2img job's init image."""

    index: int
    model: str  # the ControlNet file's stem, as the extension names it (without extension or ` [hash]`)
    module: str
    weight: float
    image: Image.Image | None
    resize_mode: int  # 0 just resize, 1 crop and resize, 2 resize and fill
    processor_res: int  # the detected map's short side (pixel_perfect: worked out from the target size)
    threshold_a: float | None
    threshold_b: float | None
    guidance_start: float
    guidance_end: float
    control_mode: int  # 0 balanced, 1 my prompt is more important, 2 ControlNet is more important
    pixel_perfect: bool
    hr_option: str  # which passes of a hires-fix job it guides
    return_map: bool  # save_detected_map: the detected map is returned after the pictures, as the extension does

    @property
    def label(self) -> str:
        return f"alwayson_scripts.controlnet.args[{self.index}]"


def _enabled(spec: Any) -> bool:
    return isinstance(spec, dict) and spec.get("enabled", True) not in (False, 0)


def _named(value: Any, choices: dict[str, int], key: str, default: int) -> int:
    """A mode sent by name ("Crop and Resize") or by index (1)."""
    if value is None:
        return default
    if isinstance(value, str) and value in choices:
        return choices[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in choices.values():
        return value
    raise EngineError(f"{key} must be one of {', '.join(repr(name) for name in choices)}, not {value!r}")


def _threshold(read: Reader, name: str, slider: Slider | None) -> float | None:
    """A slider value within the slider's range; -1 (what the extension's API sends for "unset") or nothing is the
    preprocessor's default."""
    if slider is None:
        return None
    value = read.data.get(name)
    if value is None or value == -1:
        return float(slider.default)
    return read.number(name, slider.default, slider.low, slider.high)


def preprocessor_name(module: Any, key: str) -> str:
    if module is None:
        return "none"
    if not isinstance(module, str):
        raise EngineError(f"{key} must be a preprocessor name, not {module!r}")
    name = ALIASES.get(module, module)
    if name in PREPROCESSORS:
        return name
    if any(part in name for part in NEEDS_WEIGHTS):
        raise EngineError(
            f"{key}: the preprocessor {module!r} runs an annotator model whose weights this server does not have "
            '(it never downloads any); preprocess the image elsewhere and send the result with module "none"'
        )
    raise EngineError(
        f"{key}: the preprocessor {module!r} is not one this server runs; use one of {', '.join(PREPROCESSORS)}"
    )


def _image(spec: dict[str, Any], key: str, limits: Any, ignored: list[str]) -> Image.Image | None:
    value = spec.get("image") if spec.get("image") is not None else spec.get("input_image")
    if isinstance(value, dict):  # {"image": ..., "mask": ...}, as the WebUI's image editor sends it
        if value.get("mask"):
            ignored.append(f"{key}.image.mask (ControlNet inpainting masks are not supported)")
        value = value.get("image")
    if value is None or value == "":
        return None
    return decode_image(value, f"{key}.image", max_pixels=limits.max_input_pixels, max_bytes=limits.max_input_bytes)


def parse_controlnet(data: dict[str, Any], task: str, limits: Any) -> tuple[list[ControlUnit], list[str]]:
    """The enabled units of `alwayson_scripts.controlnet` (none when it is absent), and what they leave unhonoured."""
    scripts = data.get("alwayson_scripts")
    spec = scripts.get("controlnet") if isinstance(scripts, dict) else None
    if spec is None:
        return [], []
    args = spec.get("args") if isinstance(spec, dict) else None
    if not isinstance(args, list):
        raise EngineError("alwayson_scripts.controlnet.args must be a list of ControlNet units")
    units: list[ControlUnit] = []
    ignored: list[str] = []
    for index, unit in enumerate(args):
        if not _enabled(unit):
            continue
        key = f"alwayson_scripts.controlnet.args[{index}]"
        model = unit.get("model")
        if model in (None, "", "None"):
            continue  # the extension skips a unit without a model
        if not isinstance(model, str):
            raise EngineError(f"{key}.model must be a ControlNet model's name, not {model!r}")
        if len(units) == MAX_UNITS:
            raise EngineError(f"alwayson_scripts.controlnet has more than {MAX_UNITS} enabled units")
        read = Reader(unit, prefix=f"{key}.")
        module = preprocessor_name(unit.get("module"), f"{key}.module")
        defaults = PREPROCESSORS[module]

        resolution = unit.get("processor_res")
        hr_option = unit.get("hr_option", "Both")
        if hr_option not in HR_OPTIONS:
            raise EngineError(f"{key}.hr_option must be one of {', '.join(HR_OPTIONS)}, not {hr_option!r}")
        image = _image(unit, key, limits, ignored)
        if image is None and task != "img2img":
            raise EngineError(f"{key} has no image: send one in image (a base64 PNG or JPEG)")
        start = read.number("guidance_start", 0.0, 0.0, 1.0)
        end = read.number("guidance_end", 1.0, 0.0, 1.0)
        if start > end:
            raise EngineError(f"{key}.guidance_start ({start:g}) is after its guidance_end ({end:g})")
        units.append(
            ControlUnit(
                index=index,
                model=model.split(" [", 1)[0].strip(),
                module=module,
                weight=read.number("weight", 1.0, 0.0, 2.0),
                image=image,
                resize_mode=_named(unit.get("resize_mode"), RESIZE_MODES, f"{key}.resize_mode", 1),
                processor_res=(
                    512 if resolution is None or resolution == -1 else read.integer("processor_res", 512, 64, 2048)
                ),
                threshold_a=_threshold(read, "threshold_a", defaults.threshold_a),
                threshold_b=_threshold(read, "threshold_b", defaults.threshold_b),
                guidance_start=start,
                guidance_end=end,
                control_mode=_named(unit.get("control_mode"), CONTROL_MODES, f"{key}.control_mode", 0),
                pixel_perfect=read.flag("pixel_perfect", False),
                hr_option=hr_option,
                return_map=read.flag("save_detected_map", True),
            )
        )
        ignored += [f"{key}.{name}" for name, value in unit.items() if name not in UI_KEYS and value not in NEUTRAL]
        for name in ("advanced_weighting", "effective_region_mask", "ipadapter_input"):
            if unit.get(name) not in NEUTRAL:
                ignored.append(f"{key}.{name}")
        if unit.get("union_control_type") not in NEUTRAL:
            ignored.append(f"{key}.union_control_type (ControlNet union models are not supported)")
    return units, ignored
