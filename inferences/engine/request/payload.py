"""A1111-style `api_param.json` → a validated request the engine can run (shared esd-behaviour.md §10).

Real payloads carry ~50 keys because the WebUI serialises its whole processing object. Each key is either honoured,
harmless (bookkeeping such as `save_images`), or not supported; a not-supported key whose value would change the
result is listed in `ignored`, which ends up in the job's result so nobody is left guessing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..errors import EngineError
from .controlnet_payload import ControlUnit, parse_controlnet
from .hires_payload import PIXEL_UPSCALERS, Hires, parse_hires
from .images import decode_image, load_image
from .infotext_reader import apply_infotext
from .limits import Limits
from .model_names import model_title_name
from .prompt_schedule import check_nesting
from .prompts import NetworkTag, extract_networks
from .reader import Reader
from .samplers import SAMPLERS, resolve_sampler

TASKS = ("txt2img", "img2img", "rembg", "extra-single-image")

REMBG_MODELS = (
    "u2net",
    "u2netp",
    "u2net_human_seg",
    "u2net_cloth_seg",
    "silueta",
    "isnet-general-use",
    "isnet-anime",
    "birefnet-general",
    "birefnet-general-lite",
    "birefnet-portrait",
    "bria-rmbg",
)


@dataclass
class Generation:
    """A txt2img or img2img request, validated."""

    task: str
    prompt: str  # as sent, tags included (echoed in infotexts, as A1111 does)
    negative_prompt: str
    text: str  # the prompt with extra-network tags removed
    negative_text: str
    networks: list[NetworkTag]
    seed: int
    sampler: str
    schedule: str | None  # A1111's schedule type; None: Automatic (the sampler's own)
    steps: int
    cfg_scale: float
    width: int
    height: int
    batch_size: int
    n_iter: int
    clip_skip: int
    clip_l_skip: bool  # override_settings.sdxl_clip_l_skip: SDXL's CLIP-L honours clip skip (A1111: off)
    vae: str | None  # override_settings.sd_vae; None = the job's VAE or the model's own
    eta: float | None
    noise_seed_delta: int = 0  # override_settings.eta_noise_seed_delta (A1111's ENSD)
    # override_settings.randn_source: GPU (A1111's default: the device's generators) or CPU; NV is not drawn here
    noise_source: str = "GPU"
    noise_source_sent: bool = False  # the payload named it (a CPU worker then says it could not draw GPU noise)
    checkpoint_name: str | None = None  # override_settings.sd_model_checkpoint: one of the job's models, by name
    checkpoint_key: str = "override_settings.sd_model_checkpoint"  # the payload key that named it
    subseed: int = -1  # variation seed (-1: random), mixed in by subseed_strength
    subseed_strength: float = 0.0
    seed_resize_from: tuple[int, int] | None = None  # (width, height) whose noise is drawn, then centred
    init_images: list[Image.Image] = field(default_factory=list)
    denoising_strength: float = 0.75
    resize_mode: int = 0
    mask: Image.Image | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    inpainting_fill: int = 0
    invert_mask: bool = False
    inpaint_full_res: bool = True  # A1111's API default: "Only masked" (its UI's is "Whole picture")
    inpaint_padding: int = 0  # inpaint_full_res_padding: pixels around the painted area's box
    control_units: list[ControlUnit] = field(default_factory=list)  # alwayson_scripts.controlnet, enabled units
    hires: Hires | None = None  # enable_hr (txt2img)
    ignored: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def total_images(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def first_pass_megapixel_steps(self) -> float:
        """One image's first denoising loop in megapixel-steps (steps run x pixels / 10^6): the unit a worker's
        speed is measured in and a job's run time estimated from."""
        strength = self.denoising_strength if self.task == "img2img" else 1.0
        return steps_run(self.steps, strength) * self.width * self.height / 1e6

    @property
    def megapixel_steps(self) -> float:
        """Every denoising loop of one image: the first pass and the hires fix's second pass."""
        work = self.first_pass_megapixel_steps
        if self.hires is not None:
            second = steps_run(self.hires.steps or self.steps, self.hires.denoising_strength)
            work += second * self.hires.upscale_width * self.hires.upscale_height / 1e6
        return work

    @property
    def largest_size(self) -> tuple[int, int]:
        """The largest picture the job denoises (the hires pass's, with hires fix): what memory is estimated for."""
        if self.hires is None:
            return self.width, self.height
        return self.hires.upscale_width, self.hires.upscale_height

    def named_models(self) -> list[tuple[str, str, str]]:
        """(model type, name, the payload key naming it) for every model the payload names: checked against the
        job's models at start, and looked up among them on the worker."""
        named = []
        if self.checkpoint_name is not None:
            named.append(("Stable-diffusion", self.checkpoint_name, self.checkpoint_key))
        named += [("ControlNet", unit.model, f"{unit.label}.model") for unit in self.control_units]
        if self.hires is not None:
            if self.hires.checkpoint_name:
                named.append(("Stable-diffusion", self.hires.checkpoint_name, "hr_checkpoint_name"))
            if not self.hires.latent and self.hires.upscaler not in PIXEL_UPSCALERS:
                named.append(("Upscaler", self.hires.upscaler, "hr_upscaler"))
        return named

    def images(self) -> list[tuple[str, Image.Image]]:
        """(payload field, image) for every image the request holds."""
        found = [(f"init_images[{index}]", image) for index, image in enumerate(self.init_images)]
        found += [("mask", self.mask)] if self.mask is not None else []
        return found + [(f"{unit.label}.image", unit.image) for unit in self.control_units if unit.image is not None]


@dataclass
class Removal:
    """A background-removal (rembg) request, validated."""

    image: Image.Image
    model: str
    return_mask: bool
    alpha_matting: bool
    foreground_threshold: int
    background_threshold: int
    erode_size: int
    ignored: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def named_models(self) -> list[tuple[str, str, str]]:
        return []  # background removal uses the deployment's rembg models, never the job's

    def images(self) -> list[tuple[str, Image.Image]]:
        return [("input_image", self.image)]


@dataclass
class Upscale:
    """An extra-single-image request: Lanczos, Nearest or an uploaded upscaler model, optionally blended with a
    second upscaler (`upscaler_2`, `extras_upscaler_2_visibility`); no face restoration."""

    image: Image.Image
    width: int
    height: int
    resample: str  # upscaler_1
    second: str | None = None  # upscaler_2, blended in by second_visibility
    second_visibility: float = 0.0
    ignored: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def named_models(self) -> list[tuple[str, str, str]]:
        named = [("Upscaler", self.resample, "upscaler_1")] if self.resample not in PIXEL_UPSCALERS else []
        if self.second is not None and self.second not in PIXEL_UPSCALERS:
            named.append(("Upscaler", self.second, "upscaler_2"))
        return named

    def images(self) -> list[tuple[str, Image.Image]]:
        return [("image", self.image)]


def steps_run(steps: int, strength: float) -> int:
    """The steps a loop runs: all of them from noise, A1111's int(min(strength, 0.999) * steps) from a picture."""
    return steps if strength >= 1.0 else max(1, int(min(strength, 0.999) * steps))


def load_payload(raw: bytes | str) -> dict[str, Any]:
    """Parse the uploaded JSON; `Infinity` is legal (A1111 writes s_tmax that way), other garbage is not."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EngineError(f"the payload (api_param.json) is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EngineError("the payload (api_param.json) must be a JSON object")
    if _has_nul(data):
        raise EngineError("the payload (api_param.json) holds a NUL (\\u0000) character in a string")
    return data


def _has_nul(value: Any) -> bool:
    """NUL characters have no business in a payload, and PostgreSQL cannot store the prompt or keys holding one."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            return True
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return False


# Keys that never change the picture: bookkeeping of the WebUI.
HARMLESS = {
    "override_settings_restore_afterwards",
    "comments",
    "do_not_save_samples",
    "do_not_save_grid",
    "save_images",
    "send_images",
    "sampler_index",
    "include_init_images",
    "disable_extra_networks",
    "script_args",
    "firstphase_width",  # read by txt2img (A1111's first pass size); A1111's img2img has none
    "firstphase_height",
    "force_task_id",
    "infotext",  # read by apply_infotext
    "user",
    "image_cfg_scale",
    "is_using_inpainting_conditioning",
    "outpath_samples",
    "outpath_grids",
    "sd_model",
}
HIRES = {
    "hr_scale",
    "hr_upscaler",
    "hr_second_pass_steps",
    "hr_resize_x",
    "hr_resize_y",
    "hr_checkpoint_name",
    "hr_sampler_name",
    "hr_scheduler",
    "hr_prompt",
    "hr_negative_prompt",
    "hr_additional_modules",
}
# Not supported, but harmless at these values (A1111's defaults).
INERT: dict[str, tuple[Any, ...]] = {
    "styles": ([],),
    "restore_faces": (None, False),
    "tiling": (None, False),
    "enable_hr": (None, False),
    "refiner_checkpoint": (None, "", "None"),
    "refiner_switch_at": (),
    "s_min_uncond": (None, 0, 0.0),
    "s_churn": (None, 0, 0.0),
    "s_tmax": (None, 0, 0.0, math.inf),
    "s_tmin": (None, 0, 0.0),
    "s_noise": (None, 1, 1.0),
    "script_name": (None, "", "None"),
    "initial_noise_multiplier": (None, 1, 1.0),
    "latent_mask": (None, ""),
    "denoising_strength": (),
    "mask_blur": (),
    "alwayson_scripts": (),
    "override_settings": (),
    "scheduler": (),
}
GENERATION_KEYS = {
    "prompt",
    "negative_prompt",
    "seed",
    "sampler_name",
    "batch_size",
    "n_iter",
    "steps",
    "cfg_scale",
    "width",
    "height",
    "subseed",
    "subseed_strength",
    "seed_resize_from_w",
    "seed_resize_from_h",
}
IMG2IMG_KEYS = {
    "init_images",
    "resize_mode",
    "mask",
    "mask_blur_x",
    "mask_blur_y",
    "inpainting_fill",
    "inpainting_mask_invert",
    "inpaint_full_res",
    "inpaint_full_res_padding",
}
SUPPORTED_OVERRIDES = {
    "sd_vae",
    "CLIP_stop_at_last_layers",
    "sdxl_clip_l_skip",
    "sd_model_checkpoint",
    "eta_noise_seed_delta",
    "randn_source",
}


def _ignored_keys(
    data: dict[str, Any], handled: set[str], sampler: str, honoured_scripts: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    ignored: list[str] = []
    for key, value in data.items():
        # hires-fix and variation-seed details are reported through their switch (enable_hr, subseed_strength)
        if key in handled or key in HARMLESS or key in HIRES:
            continue
        if key == "eta":
            if not SAMPLERS[sampler].takes_eta and value not in (None, 0, 0.0, 1, 1.0):
                ignored.append(f"eta ({sampler} adds no noise for it to scale)")
            continue
        if key in INERT and (not INERT[key] or value in INERT[key]):
            continue
        ignored.append(key)
    for name, spec in (
        (data.get("alwayson_scripts") or {}).items() if isinstance(data.get("alwayson_scripts"), dict) else []
    ):
        if name not in honoured_scripts and _script_enabled(spec):
            ignored.append(f"alwayson_scripts.{name}")
    overrides = data.get("override_settings")
    if isinstance(overrides, dict):
        ignored += [f"override_settings.{key}" for key in overrides if key not in SUPPORTED_OVERRIDES]
        if overrides.get("randn_source") == "NV":
            ignored.append("override_settings.randn_source NV (A1111's emulation of NVIDIA's generator is not "
                           "drawn here: noise is drawn as its GPU source draws it)")  # fmt: skip
    return ignored


def _script_enabled(spec: Any) -> bool:
    """An always-on script is active when its leading switch is true (ADetailer, refiner: `[true, ...]`) or, for
    scripts whose arguments are units (ControlNet), when a unit is enabled. A unit without an `enabled` key counts
    as enabled: older ControlNet clients send none and mean it on (the extension's own default)."""
    args = spec.get("args") if isinstance(spec, dict) else None
    if not isinstance(args, list) or not args:
        return False
    if isinstance(args[0], bool):
        return args[0]
    return any(isinstance(arg, dict) and arg.get("enabled", True) not in (False, 0) for arg in args)


def unhonoured_message(ignored: list[str]) -> str:
    """Why a job is refused under ESD_UNHONOURED_PARAMETERS=refuse: every key this server would not honour."""
    return (
        "refused (ESD_UNHONOURED_PARAMETERS=refuse): the payload uses what this server does not honour: "
        + "; ".join(ignored)
    )


def _noise_source(overrides: dict[str, Any]) -> str:
    source = overrides.get("randn_source", "GPU")
    if source not in ("GPU", "CPU", "NV"):
        raise EngineError(f"override_settings.randn_source must be GPU, CPU or NV (A1111's), not {source!r}")
    return "CPU" if source == "CPU" else "GPU"


def _side(read: Reader, key: str, limits: Limits) -> int:
    value = read.integer(key, 512, 64, limits.max_side, " and a multiple of 8")
    if value % 8:
        raise EngineError(f"{key} must be a multiple of 8 from 64 to {limits.max_side}, not {value}")
    return value


def parse_generation(task: str, data: dict[str, Any], limits: Limits) -> Generation:
    data = apply_infotext(data, task)  # A1111's `infotext` key fills what the payload does not set (issue 30.18)
    read = Reader(data)
    prompt = read.text("prompt", "", limits.max_prompt_chars)
    negative = read.text("negative_prompt", "", limits.max_prompt_chars)
    for text in (prompt, negative):
        check_nesting(text)  # brackets nested too deep are refused at start, not on the worker
    sampler_field = data.get("sampler_name") or data.get("sampler_index") or "Euler"
    if not isinstance(sampler_field, str):
        raise EngineError(f"sampler_name must be a string, not {sampler_field!r}")
    scheduler = data.get("scheduler")
    sampler, schedule = resolve_sampler(sampler_field, scheduler if isinstance(scheduler, str) else None)

    width, height = _side(read, "width", limits), _side(read, "height", limits)
    first_phase = [read.integer(f"firstphase_{side}", 0, 0, limits.max_side) for side in ("width", "height")]
    if task == "txt2img" and any(first_phase):
        # A1111's StableDiffusionProcessingTxt2Img.__post_init__ (the old API's hires fix): a non-zero
        # firstphase_width/height is the picture's size, the hires fix's target then worked out from it (issue 30.18)
        width, height = _side(read, "firstphase_width", limits), _side(read, "firstphase_height", limits)
    if width * height > limits.max_pixels:
        raise EngineError(f"width x height is {width * height} pixels; at most {limits.max_pixels} are accepted")
    batch_size = read.integer("batch_size", 1, 1, limits.max_batch_size)
    n_iter = read.integer("n_iter", 1, 1, limits.max_images)
    if batch_size * n_iter > limits.max_images:
        raise EngineError(
            f"batch_size x n_iter is {batch_size * n_iter} images; at most {limits.max_images} are accepted per job"
        )
    overrides = data.get("override_settings")
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        raise EngineError("override_settings must be an object")
    clip_skip = Reader(overrides).integer("CLIP_stop_at_last_layers", 1, 1, 12)
    vae = overrides.get("sd_vae")
    if vae is not None and not isinstance(vae, str):
        raise EngineError(f"override_settings.sd_vae must be a VAE's file name, not {vae!r}")
    if vae in ("Automatic", "None", ""):
        vae = vae or None
    checkpoint_key = "override_settings.sd_model_checkpoint"
    checkpoint_name = overrides.get("sd_model_checkpoint")
    if checkpoint_name is None and data.get("sd_model_checkpoint") not in (None, ""):
        # ESD's WebUI also sends its current model at the top level: it names the model as surely, and a model the
        # job lacks is refused rather than silently run on another (issue 29.5)
        checkpoint_key, checkpoint_name = "sd_model_checkpoint", data["sd_model_checkpoint"]
    if checkpoint_name is not None and not isinstance(checkpoint_name, str):
        raise EngineError(f"{checkpoint_key} must be a model's file name, not {checkpoint_name!r}")

    networks_off = read.flag("disable_extra_networks", False)
    text, networks = extract_networks(prompt)
    negative_text, negative_networks = extract_networks(negative)
    networks += negative_networks
    if networks_off:
        networks = []

    eta = data.get("eta")
    resize_w = read.integer("seed_resize_from_w", -1, -1, limits.max_side)
    resize_h = read.integer("seed_resize_from_h", -1, -1, limits.max_side)
    request = Generation(
        task=task,
        prompt=prompt,
        negative_prompt=negative,
        text=text,
        negative_text=negative_text,
        networks=networks,
        seed=read.integer("seed", -1, -1, 2**32 - 1),
        sampler=sampler,
        schedule=schedule,
        noise_seed_delta=Reader(overrides).integer("eta_noise_seed_delta", 0, 0, 2**32 - 1),
        noise_source=_noise_source(overrides),
        noise_source_sent="randn_source" in overrides,
        checkpoint_name=model_title_name(checkpoint_name) if checkpoint_name else None,
        checkpoint_key=checkpoint_key,
        subseed=read.integer("subseed", -1, -1, 2**32 - 1),
        subseed_strength=read.number("subseed_strength", 0.0, 0.0, 1.0),
        seed_resize_from=(resize_w, resize_h) if resize_w > 0 and resize_h > 0 else None,
        steps=read.integer("steps", 50, 1, limits.max_steps),  # A1111's API default (processing.py)
        cfg_scale=read.number("cfg_scale", 7.0, 0.0, 30.0),
        width=width,
        height=height,
        batch_size=batch_size,
        n_iter=n_iter,
        clip_skip=clip_skip,
        clip_l_skip=overrides.get("sdxl_clip_l_skip") is True,
        vae=vae,
        eta=read.number("eta", 0.0, 0.0, 1.0) if eta is not None else None,
    )
    handled = GENERATION_KEYS | {"override_settings", "scheduler"}
    extra_ignored: list[str] = []
    if task == "img2img":
        _parse_img2img(request, read, limits)
        handled |= IMG2IMG_KEYS | {"denoising_strength", "mask_blur"}
    elif read.flag("enable_hr", False):
        request.hires, extra_ignored = parse_hires(read, width, height, networks, limits)
        handled |= {"enable_hr", "denoising_strength"}
    request.control_units, control_ignored = parse_controlnet(data, task, limits)
    request.ignored = _ignored_keys(data, handled, sampler, honoured_scripts={"controlnet"})
    request.ignored += extra_ignored + control_ignored
    if task == "img2img" and request.resize_mode == 3:
        # A1111's "Just resize (latent upscale)" resizes the latent; here the picture is resized as mode 0 does
        request.ignored.append("resize_mode 3 (latent upscale: the image is resized as resize_mode 0 instead)")
    request.ignored += [
        f"<{tag.kind}:{tag.name}> (only LoRA networks are supported)" for tag in networks if tag.kind != "lora"
    ]
    request.parameters = {key: value for key, value in data.items() if key not in ("init_images", "mask")} | (
        {"init_images": None, "mask": None} if task == "img2img" else {}
    )
    return request


def _parse_img2img(request: Generation, read: Reader, limits: Limits) -> None:
    images = read.data.get("init_images")
    if not isinstance(images, list) or not images:
        raise EngineError("init_images must be a list of one or more base64 images")
    if len(images) > limits.max_images:
        raise EngineError(f"init_images holds {len(images)} images; at most {limits.max_images} are accepted")
    request.init_images = [
        decode_image(
            image,
            f"init_images[{index}]",
            max_pixels=limits.max_input_pixels,
            max_bytes=limits.max_input_bytes,
        )
        for index, image in enumerate(images)
    ]
    # A1111's StableDiffusionProcessingImg2Img.init: one picture serves every image of the batch; several make the
    # batch (batch_size becomes their count), and more than batch_size is an error (issue 30.14)
    if len(images) > 1:
        if len(images) > request.batch_size:
            raise EngineError(
                f"init_images holds {len(images)} pictures but batch_size is {request.batch_size}: as in A1111, "
                "each picture starts one image of a batch; send at most batch_size pictures, or raise batch_size"
            )
        request.batch_size = len(images)
    request.denoising_strength = read.number("denoising_strength", 0.75, 0.0, 1.0)
    request.resize_mode = read.integer("resize_mode", 0, 0, 3)
    if read.data.get("mask"):
        request.mask = decode_image(
            read.data["mask"], "mask", max_pixels=limits.max_input_pixels, max_bytes=limits.max_input_bytes
        )
    # A1111's StableDiffusionProcessingImg2Img: mask_blur_x/y default to 4, and `mask_blur`, a setter applied after
    # them, sets both when sent; inpainting_fill defaults to 0 (fill)
    request.mask_blur_x = read.integer("mask_blur_x", 4, 0, 64)
    request.mask_blur_y = read.integer("mask_blur_y", 4, 0, 64)
    if read.data.get("mask_blur") is not None:
        request.mask_blur_x = request.mask_blur_y = read.integer("mask_blur", 4, 0, 64)
    request.inpainting_fill = read.integer("inpainting_fill", 0, 0, 3)
    request.invert_mask = read.flag("inpainting_mask_invert", False)
    # A1111's UI sends its "Inpaint area" radio as an index (0 whole picture, 1 only masked), its API a bool
    request.inpaint_full_res = read.flag("inpaint_full_res", True)
    request.inpaint_padding = read.integer("inpaint_full_res_padding", 0, 0, limits.max_side)


def parse_removal(data: dict[str, Any], limits: Limits) -> Removal:
    read = Reader(data)
    model = read.text("model", "u2net", 64)
    if model not in REMBG_MODELS:
        raise EngineError(f"model must be one of {', '.join(REMBG_MODELS)}, not {model!r}")
    image = decode_image(
        data.get("input_image"),
        "input_image",
        max_pixels=limits.max_input_pixels,
        max_bytes=limits.max_input_bytes,
    )
    known = {
        "input_image",
        "model",
        "return_mask",
        "alpha_matting",
        "alpha_matting_foreground_threshold",
        "alpha_matting_background_threshold",
        "alpha_matting_erode_size",
    }
    return Removal(
        image=image,
        model=model,
        return_mask=read.flag("return_mask", False),
        alpha_matting=read.flag("alpha_matting", False),
        foreground_threshold=read.integer("alpha_matting_foreground_threshold", 240, 0, 255),
        background_threshold=read.integer("alpha_matting_background_threshold", 10, 0, 255),
        erode_size=read.integer("alpha_matting_erode_size", 10, 0, 100),
        ignored=sorted(set(data) - known),
        parameters={key: value for key, value in data.items() if key != "input_image"},
    )


def parse_upscale(data: dict[str, Any], limits: Limits) -> Upscale:
    read = Reader(data)
    image = decode_image(
        data.get("image"), "image", max_pixels=limits.max_input_pixels, max_bytes=limits.max_input_bytes
    )
    mode = read.integer("resize_mode", 0, 0, 1)
    if mode == 0:
        factor = read.number("upscaling_resize", 2.0, 0.1, 8.0)
        width, height = round(image.width * factor), round(image.height * factor)
    else:
        width = read.integer("upscaling_resize_w", 512, 1, limits.max_side * 2)
        height = read.integer("upscaling_resize_h", 512, 1, limits.max_side * 2)
    if width * height > limits.max_input_pixels:
        raise EngineError(
            f"the result would be {width}x{height} pixels; at most {limits.max_input_pixels} are accepted"
        )
    upscaler = read.text("upscaler_1", "Lanczos", 200) or "None"
    second = data.get("upscaler_2")
    second_visibility = read.number("extras_upscaler_2_visibility", 0, 0, 1)
    if second is not None and not isinstance(second, str):
        raise EngineError(f"upscaler_2 must be an upscaler's name, not {second!r}")
    ignored = []
    if read.number("gfpgan_visibility", 0, 0, 1) or read.number("codeformer_visibility", 0, 0, 1):
        ignored.append("face restoration (gfpgan/codeformer)")
    return Upscale(
        image=image,
        width=width,
        height=height,
        resample=upscaler,
        second=second if second not in (None, "", "None") and second_visibility > 0 else None,
        second_visibility=second_visibility,
        ignored=ignored,
        parameters={key: value for key, value in data.items() if key != "image"},
    )


def parse_request(task: str, raw: bytes | str | dict[str, Any], limits: Limits) -> Generation | Removal | Upscale:
    """Validate a job's payload without running anything (the web process calls this too; it needs no torch)."""
    data = raw if isinstance(raw, dict) else load_payload(raw)
    request: Generation | Removal | Upscale
    if task in ("txt2img", "img2img"):
        request = parse_generation(task, data, limits)
    elif task == "rembg":
        request = parse_removal(data, limits)
    elif task == "extra-single-image":
        request = parse_upscale(data, limits)
    else:
        raise EngineError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    images = request.images()
    total = sum(image.width * image.height for _, image in images)
    if total > limits.max_job_input_pixels:
        raise EngineError(
            f"the job's {len(images)} images hold {total} pixels in all; at most {limits.max_job_input_pixels} "
            "are accepted in one job (send smaller or fewer images)"
        )
    if limits.load_images:
        for field_name, image in images:
            load_image(image, field_name)
    return request
