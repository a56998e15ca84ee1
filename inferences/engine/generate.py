"""txt2img and img2img with A1111's meaning of seeds, batches, samplers, LoRA, embeddings and inpainting."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from .errors import Cancelled, EngineError, first_line
from .features import masking
from .features.controlnet import PreparedUnit, prepare_units
from .features.preprocessors import extension_numpy_seed
from .features.upscalers import resize_with
from .infotext import infotext
from .models.compiling import is_compiled
from .models.loading import LoadedModel
from .request import images
from .request.controlnet_payload import CONTROL_MODES, RESIZE_MODES
from .request.hires_payload import LATENT_UPSCALERS, PIXEL_UPSCALERS, Hires
from .request.job_models import JobModels
from .request.memory import TILE_ABOVE_PIXELS, decode_rows, vae_decode_bytes
from .request.options import ModelFile, Progress
from .request.payload import Generation, unhonoured_message
from .request.prompt_schedule import prompt_schedule
from .request.prompts import composable
from .request.samplers import SAMPLERS
from .request.tokens import token_ids
from .sampling import ksampling
from .sampling.conditioning import sd1_schedule, sdxl_schedule
from .sampling.preview import preview_jpeg


@dataclass
class Generated:
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    detected_maps: list[Image.Image] = field(default_factory=list)  # ControlNet's, returned after the pictures
    control_notes: list[str] = field(default_factory=list)  # the units' infotext entries
    seconds: float = 0.0
    unet_seconds: float = 0.0  # in the k-diffusion loops (the first pass: the UNet's time, mostly)
    unet_images: int = 0  # the images those loops denoised: with dynamic batching, other jobs' too
    ignored: list[str] = field(default_factory=list)  # the request's, and what this run could not honour
    gpu_noise: bool = False  # the noise was drawn on the CUDA device (the infotext then has no RNG field)


def gpu_noise(request: Generation, device: torch.device) -> bool:
    """Whether the noise is drawn on the CUDA device, as A1111's default `randn_source: GPU` draws it there (issue
    30.12); otherwise on the CPU, which is also what its GPU source draws on a machine without CUDA."""
    return request.noise_source == "GPU" and device.type == "cuda"


def noise_notes(request: Generation, on_device: bool) -> list[str]:
    """What to report when a payload asked for GPU noise that this worker could not draw."""
    if request.noise_source == "GPU" and request.noise_source_sent and not on_device:
        return ["override_settings.randn_source GPU (this worker has no CUDA device: the noise was drawn on the CPU, "
                "as A1111 draws it on a machine without one)"]  # fmt: skip
    return []


def draw_seeds(request: Generation) -> tuple[list[int], list[int]]:
    """Each image's seed and variation seed, as A1111 numbers them (processing.py): the job's (or a random one, for
    -1) plus k, except that with variation seeds (subseed_strength > 0) every image keeps the job's seed and only
    the variation seeds count up (issue 30.11)."""
    seed = request.seed if request.seed != -1 else random.randrange(2**32 - 1)
    subseed = request.subseed if request.subseed != -1 else random.randrange(2**32 - 1)
    count = request.total_images
    step = 0 if request.subseed_strength else 1
    return [seed + k * step for k in range(count)], [subseed + k for k in range(count)]


@dataclass
class Networks:
    lora_hashes: list[str]
    text: str  # the prompts with embedding names replaced by their tokens
    negative_text: str


@contextmanager
def extra_networks(pipe: Any, request: Generation, models: JobModels) -> Iterator[Networks]:
    """Load the prompt's LoRAs and embeddings onto the shared modules for one job, and take them off after.

    Unfused LoRA adapters and textual-inversion tokens are removed exactly (the base model's output comes back
    bit-identical), so the base model never has to be reloaded.
    """
    with loras(pipe, models) as lora_hashes, embeddings(pipe, request, models) as (text, negative_text):
        yield Networks(lora_hashes, text, negative_text)


@contextmanager
def loras(pipe: Any, models: JobModels) -> Iterator[list[str]]:
    """The prompt's LoRAs loaded as weighted adapters; yields the infotext's `Lora hashes` entries."""
    adapters = {lora.adapter: (lora.file, lora.weight) for lora in models.loras}
    notes: list[str] = []
    # Fused QKV projections (CUDA) hold copies of to_q/to_k/to_v that a LoRA would not reach: unfused meanwhile
    fused = bool(adapters) and getattr(pipe.unet, "original_attn_processors", None) is not None
    if fused:
        pipe.unfuse_qkv_projections()
    try:
        for adapter, (lora, _) in adapters.items():
            try:
                # SD 1.x's loader needs the UNet's layout for kohya's SGM block names; SDXL's passes it itself
                layout = {} if hasattr(pipe, "text_encoder_2") else {"unet_config": pipe.unet.config}
                pipe.load_lora_weights(str(lora.path), adapter_name=adapter, **layout)
            except Exception as exc:
                raise EngineError(f"the LoRA {lora.name} does not fit this checkpoint: {first_line(exc)}") from exc
            notes.append(f"{lora.stem}: {lora.short_hash}")
        if adapters:
            pipe.set_adapters(list(adapters), adapter_weights=[weight for _, weight in adapters.values()])
        yield notes
    finally:
        if adapters:
            pipe.unload_lora_weights()
        if fused:
            pipe.fuse_qkv_projections()


@contextmanager
def embeddings(pipe: Any, request: Generation, models: JobModels) -> Iterator[tuple[str, str]]:
    """The embeddings the prompts mention, loaded as tokens of their own and found by their names' token ids while
    the prompts are split into chunks (conditioning.py, as A1111's tokenize_line); yields the prompts."""
    mentioned = models.embeddings
    tokenizer = pipe.tokenizer
    found: list[tuple[list[int], list[int], str]] = []
    try:
        for number, embedding in enumerate(mentioned):
            # diffusers refuses tokens already in the vocabulary, and a name may be an ordinary word ("style"): the
            # vectors get tokens of their own, put where the name's ids occur
            token = f"<ti{number}-{embedding.sha256[:8]}>"
            try:
                pipe.load_textual_inversion(str(embedding.path), token=token)
            except Exception as exc:
                raise EngineError(
                    f"the embedding {embedding.name} does not fit this checkpoint: {first_line(exc)}"
                ) from exc
            vectors = token_ids(pipe.maybe_convert_prompt(token, tokenizer), tokenizer)
            if name := token_ids(embedding.stem, tokenizer):
                found.append((name, vectors, embedding.sha256))
        # A1111's ids_lookup: the longest name first where several start alike
        tokenizer.esd_embeddings = sorted(found, key=lambda pair: len(pair[0]), reverse=True)
        yield request.text, request.negative_text
    finally:
        tokenizer.esd_embeddings = []
        if mentioned:
            pipe.unload_textual_inversion()


def generate(
    model: LoadedModel,
    request: Generation,
    models: JobModels,
    progress: Progress,
    tools: Tools,
    refuse_unhonoured: bool = False,
    hires_model: LoadedModel | None = None,
) -> Generated:
    """The job's pictures: every sampler runs on the engine's loop (k-diffusion's, and A1111's own DDIM, PLMS, UniPC
    and LCM), so nothing of the request is dropped for a sampler's sake."""
    started = time.perf_counter()
    # what only the worker knows it cannot honour: GPU noise without a CUDA device
    on_device = gpu_noise(request, ksampling.parameter_device(model.base.unet))
    ignored = [*request.ignored, *noise_notes(request, on_device)]
    if refuse_unhonoured and ignored:
        raise EngineError(unhonoured_message(ignored))
    seeds, subseeds = draw_seeds(request)
    result = Generated(seeds=seeds, subseeds=subseeds, ignored=ignored, gpu_noise=on_device)
    lora_hashes = _k_diffusion_images(model, request, models, progress, result, seeds[0], tools, hires_model)
    for index, image_seed in enumerate(result.seeds):
        result.infotexts.append(
            infotext(
                request, model, model.vae, image_seed, lora_hashes, subseed=result.subseeds[index],
                control_notes=result.control_notes, hires_model=hires_model, gpu_noise=result.gpu_noise,
            )
        )  # fmt: skip
    result.seconds = time.perf_counter() - started
    return result


class Tools(Protocol):
    """What a generation borrows from the engine's caches: ControlNet and upscaler models."""

    def controlnet(self, file: ModelFile, model: LoadedModel) -> Any: ...

    def upscaler(self, file: ModelFile) -> Callable[..., Image.Image]: ...


@dataclass
class ModelRun:
    """One loaded model ready for k-diffusion: its pipeline, its denoiser, and its prompts encoded once each."""

    model: LoadedModel
    pipe: Any
    denoiser: Any
    device: torch.device
    sdxl: bool
    encoded: dict[tuple[tuple[str, ...], bool, int, int, tuple[str, ...]], list[ksampling.TextCond]] = field(
        default_factory=dict
    )

    @classmethod
    def of(cls, model: LoadedModel) -> ModelRun:
        pipe = model.base
        return cls(
            model, pipe, ksampling.denoiser(pipe.unet, pipe.scheduler.config),
            ksampling.parameter_device(pipe.unet), model.architecture.family == "sdxl",
        )  # fmt: skip

    def schedule_conds(
        self, request: Generation, texts: tuple[str, ...], negative: bool, width: int, height: int
    ) -> list[ksampling.TextCond]:
        """One prompt's scheduled texts encoded together, as A1111 encodes them (conditioning.py), once each."""
        # the embeddings loaded now (by file) decide what the texts' names mean: a batch's jobs may differ in them
        loaded = tuple(sha for _, _, sha in getattr(self.pipe.tokenizer, "esd_embeddings", []))
        key = (texts, negative, width, height, loaded)
        if key not in self.encoded:
            if not self.sdxl:
                hidden = sd1_schedule(self.pipe, list(texts), request.clip_skip)
                self.encoded[key] = [ksampling.TextCond(row.to(self.device)) for row in hidden]
            else:
                # A1111's SDXL size conditioning: original and target size are the picture's, the crop is 0, 0.
                time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=self.device)
                self.encoded[key] = [
                    ksampling.TextCond(row.to(self.device), pooled.to(self.device), time_ids)
                    for row, pooled in sdxl_schedule(
                        self.pipe, list(texts), request.clip_skip, request.clip_l_skip, negative=negative
                    )
                ]
        return self.encoded[key]

    def conditioning(
        self,
        request: Generation,
        texts: tuple[str, str],
        sampler: str,
        steps: int,
        size: tuple[int, int],
        count: int,
        *,
        hires: bool = False,
    ) -> ksampling.Conditioning:
        """Both prompts over the pass's steps (prompt editing is scheduled over the model evaluations: twice the
        steps for second-order samplers, as A1111's sampler_config.total_steps counts them), repeated for a batch of
        `count`. `hires`: the hires fix's second pass, whose `when`s count after the first pass's evaluations."""
        edit_steps = evaluations(sampler, steps)
        first_pass = evaluations(request.sampler, request.steps) if hires else None

        def schedule(text: str, negative: bool) -> ksampling.Schedule:
            entries = prompt_schedule(text, edit_steps, first_pass)
            conds = self.schedule_conds(request, tuple(in_force for _, in_force in entries), negative, *size)
            return [(end, cond.repeat(count)) for (end, _), cond in zip(entries, conds, strict=True)]

        uncond = schedule(texts[1], True)
        # A1111's composable diffusion: the positive prompt's sub-prompts (AND), each scheduled on its own and
        # weighted; a lone sub-prompt of weight 1 is the plain guidance (its text without a trailing ":1")
        subs = composable(texts[0])
        if len(subs) == 1 and subs[0][1] == 1.0:
            return ksampling.Conditioning(cond=schedule(subs[0][0], False), uncond=uncond)
        parts = [(schedule(sub, False), weight) for sub, weight in subs]
        return ksampling.Conditioning(cond=parts[0][0], uncond=uncond, parts=parts)

    def decode(self, latents: torch.Tensor, width: int, height: int, rows: int | None = None) -> list[Image.Image]:
        """The latents' pictures, `rows` images per VAE call (by default as many as the device's free memory holds
        on CUDA, one on other devices: decode_rows); in tiles above TILE_ABOVE_PIXELS."""
        vae = self.pipe.vae
        scaled = latents.to(ksampling.parameter_dtype(vae)) / vae.config.scaling_factor
        rows = self.decode_rows(len(scaled), width, height) if rows is None else rows
        with tiled_if_large(vae, width, height):
            if rows <= 1 or vae.use_tiling:
                decoded = vae.decode(scaled).sample  # diffusers' slicing: one image per call
            else:
                vae.disable_slicing()  # enabled at load (device.py) for the one-image default
                try:
                    decoded = torch.cat([vae.decode(chunk).sample for chunk in scaled.split(rows)])
                finally:
                    vae.enable_slicing()
        return pictures(decoded)

    def decode_rows(self, images: int, width: int, height: int) -> int:
        """Images per VAE call: on CUDA, all that fit in 80 % of the device's free memory (a batch-8 job decoded
        one image at a time left an H200 idle for 17 % of it: issue 28); elsewhere one, so that a CPU worker decodes
        each picture by the very call it makes alone (the same pictures batched or not). A compiled decoder keeps
        one image per call too: each new count would be a compilation of its own (compiling.py)."""
        vae = self.pipe.vae
        if self.device.type != "cuda" or is_compiled(vae.decoder):
            return 1
        free, _ = torch.cuda.mem_get_info(self.device)
        dtype_bytes = ksampling.parameter_dtype(vae).itemsize
        per_image = vae_decode_bytes(width * height, vae.decoder.conv_out.in_channels, dtype_bytes)
        return decode_rows(images, per_image, int(free * 0.8))


def evaluations(sampler: str, steps: int) -> int:
    """A1111's sampler_config.total_steps: the model evaluations of `steps` steps (twice as many for second-order
    samplers), the unit prompt editing is scheduled in."""
    return steps * (2 if SAMPLERS[sampler].second_order else 1)


def pictures(decoded: torch.Tensor) -> list[Image.Image]:
    """Decoded images (-1..1, NCHW) as 8-bit pictures the way A1111's processing.py makes them: clamp((x + 1) / 2)
    in torch, x 255 in numpy, and astype(uint8), which truncates. diffusers' postprocess rounds instead, so 46 % of
    values came out one level higher than A1111's (issue 30.13)."""
    return unit_pictures(torch.clamp((decoded.float() + 1.0) / 2.0, min=0.0, max=1.0))


def unit_pictures(unit: torch.Tensor) -> list[Image.Image]:
    """Images in 0..1 (NCHW) as 8-bit pictures, truncated as A1111's astype(uint8) does."""
    arrays = 255.0 * np.moveaxis(unit.float().cpu().numpy(), 1, 3)
    return [Image.fromarray(array.astype(np.uint8)) for array in arrays]


def _control(units: list[PreparedUnit], run: ModelRun, size: tuple[int, int], steps: int, second: bool) -> Any:
    dtype = ksampling.parameter_dtype(run.pipe.unet)
    active = [unit.active(*size, run.device, dtype, second_pass=second) for unit in units if unit.runs_in(second)]
    return ksampling.ControlPass(active, steps) if active else None


def _k_diffusion_images(
    model: LoadedModel,
    request: Generation,
    models: JobModels,
    progress: Progress,
    result: Generated,
    seed: int,
    tools: Tools,
    hires_model: LoadedModel | None,
) -> list[str]:
    """txt2img, img2img and inpainting as A1111 runs them, for SD 1.x and SDXL: k-diffusion's sampler over the
    UNet, A1111's noise, conditioning and img2img schedule (the last denoising_strength x steps of the full one),
    a regular model's inpainting by latent blending, ControlNet residuals, and the hires fix's second pass; the
    pictures are decoded by the model's VAE. Returns the LoRA hashes the infotext names."""
    first = ModelRun.of(model)
    size = (request.width, request.height)
    shape = (4, request.height // 8, request.width // 8)
    on_device = result.gpu_noise  # the first pass's model; the hires pass's may sit on another device
    sources, frame = _img2img_inputs(request)
    keep = None if frame is None else _latent_keep(frame.mask, shape).to(first.device)
    units = prepare_units(
        request.control_units, models.controlnets, lambda file: tools.controlnet(file, model),
        request.init_images, request.width, request.height,
        extension_numpy_seed(seed, request.seed, request.subseed),
    )  # fmt: skip
    hires = request.hires
    second_steps = (hires.steps or request.steps) if hires is not None and hires.denoising_strength > 0 else 0
    full = ksampling.sigmas_for(first.denoiser, request.sampler, request.schedule, request.steps, sdxl=first.sdxl)
    # img2img runs the last denoising_strength x steps of the full schedule (A1111's t_enc), one step more
    t_enc = int(min(request.denoising_strength, 0.999) * request.steps)
    per_batch = (request.steps if request.task == "txt2img" else t_enc + 1) + second_steps
    done = 0
    with ExitStack() as stack:
        networks = stack.enter_context(extra_networks(first.pipe, request, models))
        second = first
        if hires_model is not None and hires_model is not model:
            if hires_model.architecture.family != model.architecture.family:
                raise EngineError(
                    f"hr_checkpoint_name names {hires_model.checkpoint.name}, a {hires_model.architecture.label} "
                    f"model; the first pass's is {model.architecture.label}, whose pictures it cannot refine"
                )
            second = ModelRun.of(hires_model)
            stack.enter_context(extra_networks(second.pipe, request, models))
        stack.enter_context(torch.inference_mode())
        texts = (networks.text, networks.negative_text)
        for iteration in range(request.n_iter):
            start = iteration * request.batch_size
            batch_seeds = result.seeds[start : start + request.batch_size]
            batch_subseeds = result.subseeds[start : start + len(batch_seeds)]
            count = len(batch_seeds)
            noise = ksampling.ImageNoise(
                shape, batch_seeds, first.device, request.noise_seed_delta, subseeds=batch_subseeds,
                subseed_strength=request.subseed_strength, resize_from=request.seed_resize_from, on_device=on_device,
            )  # fmt: skip
            schedule = sigmas = full
            inpaint = None
            picks = [(start + k) % len(sources) for k in range(count)] if sources else []
            if request.task == "txt2img":
                x = ksampling.start_from_noise(request.sampler, sigmas, noise.next())
            else:
                init = _encode(first.pipe, [sources[pick] for pick in picks], batch_seeds)
                if keep is not None:
                    init = _latent_fill(init, keep, request.inpainting_fill, batch_seeds, on_device)
                    inpaint = ksampling.LatentMask(init, keep)
                x, sigmas = ksampling.start_from_picture(
                    request.sampler, first.denoiser, sigmas, t_enc, init, noise.next()
                )
            steps = max(1, len(sigmas) - 1)
            loop_started = time.perf_counter()
            latents = ksampling.sample(
                model_denoiser=first.denoiser, name=request.sampler, sigmas=sigmas, x=x, noise=noise,
                conditioning=first.conditioning(request, texts, request.sampler, request.steps, size, count),
                cfg_scale=request.cfg_scale, seeds=batch_seeds, callback=_on_step(progress, done, per_batch, request, first.sdxl),
                eta=request.eta, inpaint=inpaint, control=_control(units, first, size, steps, second=False),
                from_noise=request.task == "txt2img", schedule=schedule,
            )  # fmt: skip
            result.unet_seconds += time.perf_counter() - loop_started
            result.unet_images += count
            if hires is None:
                batch_images = first.decode(latents, request.width, request.height)
            else:
                batch_images = _hires_pass(
                    first, second, latents, request, hires, texts, batch_seeds, batch_subseeds, units, tools, models,
                    _on_step(progress, done + steps, per_batch, request, second.sdxl),
                )  # fmt: skip
            done += per_batch
            if frame is not None:
                batch_images = [frame.compose(image, pick) for image, pick in zip(batch_images, picks, strict=True)]
            result.images += batch_images
    result.detected_maps = [unit.detected for unit in units if unit.unit.return_map]
    result.control_notes = [control_note(unit) for unit in units]
    return networks.lora_hashes


def _on_step(
    progress: Progress, base: int, per_batch: int, request: Generation, sdxl: bool
) -> Callable[[int, torch.Tensor], None]:
    """The sampler's step callback: progress over every pass of every batch, the job's cancel flag, and the live
    preview of the step's prediction when the job's progress wants one."""
    total = per_batch * request.n_iter

    def on_step(index: int, denoised: torch.Tensor) -> None:
        if progress.cancelled():
            raise Cancelled()
        done = min(base + index + 1, total)
        progress.step(done, total)
        if progress.wants_preview(done):
            progress.preview(preview_jpeg(denoised, sdxl))

    return on_step


def _hires_pass(
    first: ModelRun,
    second: ModelRun,
    latents: torch.Tensor,
    request: Generation,
    hires: Hires,
    texts: tuple[str, str],
    seeds: list[int],
    subseeds: list[int],
    units: list[PreparedUnit],
    tools: Tools,
    models: JobModels,
    callback: Callable[[int, torch.Tensor], None],
) -> list[Image.Image]:
    """A1111's hires fix (StableDiffusionProcessingTxt2Img.sample_hr_pass): the first pass upscaled (its latent
    interpolated, or its picture upscaled and encoded again), cropped to the asked box, then an img2img pass of
    `hr_second_pass_steps` steps at `denoising_strength`, with noise drawn again from the same seeds."""
    target = (hires.upscale_width, hires.upscale_height)
    if hires.latent:
        mode, antialias = LATENT_UPSCALERS[hires.upscaler]
        samples = torch.nn.functional.interpolate(
            latents, size=(target[1] // 8, target[0] // 8), mode=mode, antialias=antialias
        )
    else:
        model = None
        if hires.upscaler not in PIXEL_UPSCALERS:
            model = tools.upscaler(models.upscaler("hr_upscaler"))
        pictures = [
            resize_with(picture, *target, hires.upscaler, model)
            for picture in first.decode(latents, request.width, request.height)
        ]
        samples = _encode(second.pipe, pictures, seeds)
    if hires.truncate_x or hires.truncate_y:
        ty, tx = hires.truncate_y, hires.truncate_x
        samples = samples[:, :, ty // 2 : samples.shape[2] - (ty + 1) // 2, tx // 2 : samples.shape[3] - (tx + 1) // 2]
    size = (hires.width, hires.height)
    if hires.denoising_strength == 0:  # nothing to denoise: the upscaled first pass is the picture
        return second.decode(samples, *size)
    sampler = hires.sampler or request.sampler
    schedule = hires.schedule if hires.sampler is not None else request.schedule
    steps = hires.steps or request.steps
    # A1111's setup_img2img_steps with explicit steps: a schedule of steps / strength, of which exactly `steps` run
    scheduled = int(steps / min(hires.denoising_strength, 0.999))
    full = ksampling.sigmas_for(second.denoiser, sampler, schedule, scheduled, sdxl=second.sdxl)
    noise = ksampling.ImageNoise(
        tuple(samples.shape[1:]), seeds, second.device, request.noise_seed_delta, subseeds=subseeds,
        subseed_strength=request.subseed_strength, resize_from=request.seed_resize_from,
        on_device=gpu_noise(request, second.device),
    )  # fmt: skip
    # A1111's setup_img2img_steps with explicit steps: t_enc = steps - 1 of the longer schedule
    x, sigmas = ksampling.start_from_picture(sampler, second.denoiser, full, steps - 1, samples.to(second.device),
                                             noise.next())  # fmt: skip
    hires_texts = (
        texts[0] if hires.text is None else hires.text,
        texts[1] if hires.negative_text is None else hires.negative_text,
    )
    latents = ksampling.sample(
        model_denoiser=second.denoiser, name=sampler, sigmas=sigmas, x=x, noise=noise,
        conditioning=second.conditioning(request, hires_texts, sampler, steps, target, len(seeds), hires=True),
        cfg_scale=request.cfg_scale, seeds=seeds, callback=callback, eta=request.eta,
        control=_control(units, second, size, len(sigmas) - 1, second=True), schedule=full,
    )  # fmt: skip
    return second.decode(latents, *size)


def control_note(prepared: PreparedUnit) -> str:
    """sd-webui-controlnet's infotext entry for a unit (`ControlNet 0: "Module: canny, Model: ..., ..."`)."""
    unit = prepared.unit
    fields = {
        "Module": unit.module,
        "Model": f"{prepared.file.stem} [{prepared.file.sha256[:8]}]" if prepared.file.sha256 else prepared.file.stem,
        "Weight": unit.weight,
        "Resize Mode": next(name for name, value in RESIZE_MODES.items() if value == unit.resize_mode),
        "Processor Res": unit.processor_res,
        "Threshold A": unit.threshold_a,
        "Threshold B": unit.threshold_b,
        "Guidance Start": unit.guidance_start,
        "Guidance End": unit.guidance_end,
        "Pixel Perfect": unit.pixel_perfect,
        "Control Mode": next(name for name, value in CONTROL_MODES.items() if value == unit.control_mode),
    }
    text = ", ".join(f"{key}: {value}" for key, value in fields.items() if value is not None)
    return f"ControlNet {unit.index}: {text}"


@contextmanager
def tiled_if_large(vae: Any, width: int, height: int) -> Iterator[None]:
    """Decode in tiles above TILE_ABOVE_PIXELS (the VAE's full-size activations would dominate the job's memory),
    as the memory estimate assumes; smaller pictures decode whole, unchanged."""
    before = vae.use_tiling
    vae.use_tiling = before or width * height > TILE_ABOVE_PIXELS
    try:
        yield
    finally:
        vae.use_tiling = before


def _latent_keep(mask: Image.Image, shape: tuple[int, ...]) -> torch.Tensor:
    """A1111's latent mask: the (blurred) mask resized to the latent (PIL's default bicubic), rounded, inverted:
    1 where the picture is kept, 0 where it is repainted; [1, channels, h, w]."""
    import numpy as np

    small = mask.convert("RGB").resize((shape[2], shape[1]))
    repaint = np.around(np.asarray(small, dtype=np.float32)[:, :, 0] / 255)
    return (1.0 - torch.from_numpy(repaint))[None, None].expand(1, shape[0], -1, -1)


def _latent_fill(init: torch.Tensor, keep: torch.Tensor, fill: int, seeds: list[int], on_device: bool) -> torch.Tensor:
    """A1111's latent `inpainting_fill`: 2 latent noise (create_random_tensors: each image's seed's first noise, from
    the same generators as the sampling noise) and 3 latent nothing (zeros) under the mask."""
    if fill == 2:
        noise = ksampling.ImageNoise(tuple(init.shape[1:]), seeds, init.device, on_device=on_device).next()
        return init * keep + noise.to(init.dtype) * (1 - keep)
    if fill == 3:
        return init * keep
    return init


def _encode(pipe: Any, batch: list[Image.Image], seeds: list[int]) -> torch.Tensor:
    """img2img's starting latents: the VAE's sample of each picture, drawn with a generator seeded by its seed."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(batch).to(ksampling.parameter_device(vae), ksampling.parameter_dtype(vae))
    posterior = vae.encode(pixels).latent_dist
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    noise = torch.stack([torch.randn(posterior.mean.shape[1:], generator=g) for g in generators]).to(
        posterior.mean.device
    )
    latents = posterior.mean + posterior.std * noise.to(posterior.mean.dtype)
    return latents.float() * vae.config.scaling_factor


def _img2img_inputs(request: Generation) -> tuple[list[Image.Image], masking.Inpainting | None]:
    """What img2img encodes, one per init picture, and the inpainting frame (None: no mask, or a blank one in
    "Only masked" mode, which A1111 runs as plain img2img)."""
    if request.task != "img2img":
        return [], None
    if request.mask is not None:
        frame = masking.prepare(
            request.init_images, request.mask, request.width, request.height, resize_mode=request.resize_mode,
            invert=request.invert_mask, blur_x=request.mask_blur_x, blur_y=request.mask_blur_y,
            inpainting_fill=request.inpainting_fill, only_masked=request.inpaint_full_res,
            padding=request.inpaint_padding,
        )  # fmt: skip
        if frame is not None:
            return frame.sources, frame
    return [images.resize(images.flatten(image), request.width, request.height, request.resize_mode)
            for image in request.init_images], None  # fmt: skip
