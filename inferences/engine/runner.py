"""The engine's entry point: `Engine(options).run_plan(plan, progress) -> Result` for a job planned at start
(request/plan.py), `Engine(options).run(task, payload, files, progress)` to plan and run a payload here."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from PIL import Image

from .errors import Cancelled, EngineError, first_line
from .infotext import VERSION
from .models.cache import Acquired, PipelineCache
from .request import images
from .request.batch_key import ALONE
from .request.job_models import JobModels
from .request.memory import Estimate, MemoryNeeds, check_fits
from .request.options import EngineOptions, JobFiles, ModelFile, NoProgress, Progress
from .request.payload import Generation, Removal, Upscale
from .request.plan import JobPlan, plan_job

if TYPE_CHECKING:
    from .generate import Generated


@dataclass
class Result:
    task: str
    pictures: list[tuple[Image.Image, str | None]]  # each picture with its infotext (PNG `parameters`), if any
    parameters: dict[str, Any]
    info: dict[str, Any]
    ignored: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _pngs: list[bytes] | None = field(default=None, repr=False)

    @property
    def images(self) -> list[bytes]:
        """The PNG files, encoded once, in parallel, by the thread that first asks: a worker's finisher, so the
        device goes on to the next job meanwhile (inferences/finisher.py), not the engine's loop."""
        if self._pngs is None:
            started = time.perf_counter()
            self._pngs = images.png_files(self.pictures)
            self.timings["encode_seconds"] = time.perf_counter() - started
        return self._pngs

    def document(self) -> dict[str, Any]:
        """What ESD stores as `{id}_param.json`: the echoed request and A1111's info JSON string."""
        return {"parameters": self.parameters, "info": json.dumps(self.info), "ignored_parameters": self.ignored}

    def worker_json(self) -> dict[str, Any]:
        """A1111's HTTP answer for the task (esd-behaviour.md §10.5), images inline as base64."""
        encoded = [base64.b64encode(png).decode("ascii") for png in self.images]
        if self.task in ("txt2img", "img2img"):
            return {"images": encoded, **self.document()}
        if self.task == "extra-single-image":
            return {"image": encoded[0], "html_info": self.info.get("html_info", "")}
        return {"image": encoded[0]}


@dataclass(frozen=True)
class Job:
    """One job of `Engine.run_batch` as a payload and files (commands, benches, tests): planned there."""

    task: str
    payload: bytes | str | dict[str, Any]
    files: JobFiles
    progress: Progress = field(default_factory=NoProgress)


@dataclass(frozen=True)
class PlannedJob:
    """One job of `Engine.run_batch` as a worker has it: the plan made at start (request/plan.py), its model
    files at local paths."""

    plan: JobPlan
    progress: Progress = field(default_factory=NoProgress)


class Engine:
    """One per worker process: it owns the pipeline cache, so consecutive jobs on a model skip the load."""

    def __init__(self, options: EngineOptions | None = None) -> None:
        from .models.device import release_memory, set_threads

        self.options = options or EngineOptions()
        set_threads(self.options.threads)
        self.pipelines = PipelineCache(self.options.cache_bytes, on_evict=release_memory)
        self.headers: dict[tuple[str, str], dict[str, dict[str, object]]] = {}  # what memory estimates read

    def plan(self, task: str, payload: bytes | str | dict[str, Any], files: JobFiles) -> JobPlan:
        """Plan a payload here, with local files (a worker runs the plan its job was started with)."""
        return plan_job(task, payload, files, self.options.limits, self._header)

    def run(
        self, task: str, payload: bytes | str | dict[str, Any], files: JobFiles, progress: Progress | None = None
    ) -> Result:
        return self.run_plan(self.plan(task, payload, files), progress or NoProgress())

    def run_plan(self, plan: JobPlan, progress: Progress) -> Result:
        if progress.cancelled():  # asked to stop while queued or while its payload and models were fetched
            raise Cancelled()
        if isinstance(plan.request, Generation):
            return self._generate(plan, plan.request, progress)
        if isinstance(plan.request, Removal):
            return self._remove(plan.request, progress)
        return self._upscale(plan, plan.request, progress)

    def _acquire_model(self, checkpoint: ModelFile, vae: ModelFile | None) -> Acquired:
        from .models.loading import load_model

        key = (checkpoint.sha256 or str(checkpoint.path), vae.sha256 or str(vae.path) if vae else None)

        def load() -> tuple[Any, int]:
            model = load_model(checkpoint, vae, self.options)
            return model, model.size_bytes

        return self.pipelines.acquire(key, load)

    def controlnet(self, file: ModelFile, model: Any) -> Any:
        """A ControlNet built to `model`'s UNet, kept in the pipeline cache beside the checkpoints (its budget)."""
        from .features.controlnet import load_controlnet
        from .models.device import module_bytes_of

        def load() -> tuple[Any, int]:
            controlnet = load_controlnet(file, model.base.unet, model.architecture.label)
            return controlnet, module_bytes_of(controlnet)

        key = ("controlnet", file.sha256 or str(file.path), model.checkpoint.sha256 or str(model.checkpoint.path))
        return self.pipelines.acquire(key, load).entry.value

    def upscaler(self, file: ModelFile) -> Callable[..., Image.Image]:
        """The upscaler model in `file` as one tiled pass over a picture, its model kept in the pipeline cache."""
        from .features.upscalers import load_upscaler, run_model
        from .models.device import module_bytes_of, torch_device

        def load() -> tuple[Any, int]:
            descriptor = load_upscaler(file, torch_device(self.options))
            return descriptor, module_bytes_of(descriptor.model)

        return partial(run_model, self.pipelines.acquire(("upscaler", file.sha256 or str(file.path)), load).entry.value)

    def _generate(self, plan: JobPlan, request: Generation, progress: Progress) -> Result:
        from .generate import generate
        from .models.device import release_memory

        models = plan.models
        checkpoint, hires_checkpoint = models.checkpoint, models.hires_checkpoint
        assert checkpoint is not None and plan.memory is not None  # a generation's plan has both
        need = self._check_memory(plan.memory)
        with ExitStack() as stack:
            # A hires checkpoint is held (and locked) beside the first for the whole job; each is locked as soon as
            # it is acquired (so loading the other cannot evict it), in the order of their paths, so two jobs using
            # the same two models the other way round cannot deadlock.
            wanted = [checkpoint] + ([hires_checkpoint] if hires_checkpoint is not None else [])
            held: dict[str, Acquired] = {}
            for file in sorted(wanted, key=lambda file: str(file.path)):
                held[str(file.path)] = self._acquire_model(file, models.vae)
                stack.enter_context(held[str(file.path)].entry.lock)
            acquired = held[str(checkpoint.path)]
            hires_model = held[str(hires_checkpoint.path)].entry.value if hires_checkpoint is not None else None
            if progress.cancelled():  # loading a real model takes a while: a cancel meanwhile stops here
                raise Cancelled()
            try:
                generated = generate(
                    acquired.entry.value,
                    request,
                    models,
                    progress,
                    self,
                    refuse_unhonoured=self.options.unhonoured == "refuse",
                    hires_model=hires_model,
                )
            except MemoryError as exc:  # torch.OutOfMemoryError (CUDA) is one too
                release_memory()
                raise EngineError(
                    f"the worker ran out of memory running this job (estimated {need.describe()}): "
                    f"{first_line(exc)}; lower width/height or batch_size"
                ) from exc
        return _generation_result(request, acquired, generated)

    def run_batch(self, jobs: Sequence[Job | PlannedJob]) -> list[Result | Exception]:
        """Several jobs at once (dynamic batching): those whose plans share a batch key run through one denoising
        loop (batched.py), the others one by one. One outcome per job, in order: its Result, or the exception that
        failed or cancelled it; one job's failure is never its neighbours'."""
        outcomes: list[Result | Exception | None] = [None] * len(jobs)
        planned: dict[int, PlannedJob] = {}
        groups: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            if isinstance(job, Job):
                try:
                    job = PlannedJob(self.plan(job.task, job.payload, job.files), job.progress)
                except EngineError as exc:
                    outcomes[index] = exc
                    continue
            planned[index] = job
            if job.plan.batch_key != ALONE:
                groups.setdefault(job.plan.batch_key, []).append(index)
        for group in groups.values():
            if len(group) > 1:
                for index, outcome in self._generate_together([planned[index] for index in group], group).items():
                    outcomes[index] = outcome
        for index, job in planned.items():
            if outcomes[index] is None:
                try:
                    outcomes[index] = self.run_plan(job.plan, job.progress)
                except Exception as exc:  # the worker tells the kinds apart, as for a job run alone
                    outcomes[index] = exc
        return [outcome for outcome in outcomes if outcome is not None]

    def _generate_together(self, jobs: list[PlannedJob], indexes: list[int]) -> dict[int, Result | Exception]:
        """The group's shared loop; members it could not take are left out of the answer (they run alone)."""
        from .batched import ALONE as RUNS_ALONE
        from .batched import Member, generate_together
        from .generate import Generated
        from .models.device import release_memory

        leader = jobs[0].plan
        # a batch key other than ALONE is a generation's (plan_job), with its checkpoint and memory needs
        members = [
            Member(request, job.plan.models, job.progress)
            for job in jobs
            if isinstance(request := job.plan.request, Generation)
        ]
        assert len(members) == len(jobs) and leader.models.checkpoint is not None and leader.memory is not None
        try:
            self._check_memory(leader.memory, batch_size=sum(member.request.batch_size for member in members))
        except EngineError:
            return {}  # together they would not fit: one at a time, each checked on its own
        acquired = self._acquire_model(leader.models.checkpoint, leader.models.vae)
        with acquired.entry.lock:
            try:
                generated = generate_together(
                    acquired.entry.value, members, refuse_unhonoured=self.options.unhonoured == "refuse"
                )
            except MemoryError:
                release_memory()
                return {}
        together = [outcome for outcome in generated if isinstance(outcome, Generated)]
        shared_images = sum(len(outcome.images) for outcome in together)
        answers: dict[int, Result | Exception] = {}
        for index, member, outcome in zip(indexes, members, generated, strict=True):
            if outcome is RUNS_ALONE:
                continue
            if not isinstance(outcome, Generated):
                answers[index] = outcome
                continue
            result = _generation_result(member.request, acquired, outcome)
            result.timings |= {"batch_jobs": float(len(together)), "batch_images": float(shared_images)}
            answers[index] = result
        return answers

    def _check_memory(self, needs: MemoryNeeds, batch_size: int | None = None, where: str = "") -> Estimate:
        """Refuse, before loading anything, a job whose estimated peak at this worker's dtype exceeds its budget
        (every model it holds beside the checkpoint included): what the plan made at start could not know."""
        from .models.device import memory_budget, torch_dtype

        need = needs.estimate(torch_dtype(self.options).itemsize, batch_size)
        check_fits(need, memory_budget(self.options), where or f"this worker ({self.options.device}) has")
        return need

    def _header(self, file: ModelFile) -> dict[str, dict[str, object]]:
        """A model file's safetensors header, read once per file and process (a real checkpoint's is ~100 kB)."""
        from .request.identify import header_entries

        key = (str(file.path), file.sha256)
        if key not in self.headers:
            self.headers[key] = header_entries(file.path)
        return self.headers[key]

    def _remove(self, request: Removal, progress: Progress) -> Result:
        from .features.removal import remove_background

        started = time.perf_counter()
        progress.step(0, 1)
        image = remove_background(request, self.options.u2net_home)
        progress.step(1, 1)
        return Result(
            task="rembg",
            pictures=[(image, None)],
            parameters=request.parameters,
            info={"model": request.model, "ignored_parameters": request.ignored},
            ignored=request.ignored,
            timings={"inference_seconds": time.perf_counter() - started},
        )

    def _upscale(self, plan: JobPlan, request: Upscale, progress: Progress) -> Result:
        assert plan.memory is not None  # an extras plan has its upscalers' needs
        self._check_memory(plan.memory, where="this worker has")
        started = time.perf_counter()
        image = request.image.convert("RGBA" if request.image.mode in ("RGBA", "LA", "P") else "RGB")
        upscaled = self._upscaled(image, request.resample, request, plan.models, "upscaler_1")
        # as A1111's extras: with upscaler_1 "None" nothing is upscaled, upscaler_2 included
        if request.second is not None and request.resample != "None":
            second = self._upscaled(image, request.second, request, plan.models, "upscaler_2")
            # A1111's extras: the second upscaler's picture blended over the first by its visibility
            upscaled = Image.blend(upscaled, second.convert(upscaled.mode), request.second_visibility)
        progress.step(1, 1)
        names = request.resample + (f", {request.second}" if request.second else "")
        html = f"<p>Postprocess upscale to: {upscaled.width}x{upscaled.height}, upscaler: {names}</p>"
        return Result(
            task="extra-single-image",
            pictures=[(upscaled, None)],
            parameters=request.parameters,
            info={"html_info": html, "ignored_parameters": request.ignored},
            ignored=request.ignored,
            timings={"inference_seconds": time.perf_counter() - started},
        )

    def _upscaled(self, image: Image.Image, name: str, request: Upscale, models: JobModels, key: str) -> Image.Image:
        """The picture at the asked size through one upscaler: Lanczos and Nearest resize to it directly, a model
        runs as A1111 runs it (upscale, then Lanczos to the size), keeping an alpha channel beside it."""
        if name == "None":
            return image
        if name in ("Lanczos", "Nearest"):
            method = Image.Resampling.LANCZOS if name == "Lanczos" else Image.Resampling.NEAREST
            return image.resize((request.width, request.height), method)
        from .features.upscalers import resize_with

        model = self.upscaler(models.upscaler(key))
        try:
            result = resize_with(image.convert("RGB"), request.width, request.height, name, model)
        except MemoryError as exc:
            raise EngineError(f"the worker ran out of memory upscaling with {name}: {first_line(exc)}") from exc
        if image.mode == "RGBA":  # the model sees colour only; the alpha channel is resized beside it
            result.putalpha(image.getchannel("A").resize(result.size, Image.Resampling.LANCZOS))
        return result


def _generation_result(request: Generation, acquired: Acquired, generated: Generated) -> Result:
    pictures: list[tuple[Image.Image, str | None]] = [
        *zip(generated.images, generated.infotexts, strict=True),
        *((detected, None) for detected in generated.detected_maps),
    ]
    info = _generation_info(request, acquired.entry.value, generated)
    info["ignored_parameters"] = generated.ignored
    return Result(
        task=request.task,
        pictures=pictures,
        parameters=request.parameters,
        info=info,
        ignored=generated.ignored,
        timings={
            "model_seconds": acquired.seconds,
            "model_cache_hit": float(acquired.hit),
            "inference_seconds": generated.seconds,
        }
        | (_speed(request, generated.unet_seconds / generated.unet_images) if generated.unet_images else {}),
    )


def _speed(request: Generation, seconds_per_image: float) -> dict[str, float]:
    """The loop's time per image, and per megapixel-step: the speed `start` estimates later jobs' run times from
    (inferences.selectors.endpoint_speed)."""
    return {
        "unet_seconds_per_image": seconds_per_image,
        "unet_seconds_per_megapixel_step": seconds_per_image / request.first_pass_megapixel_steps,
    }


def _generation_info(request: Generation, model: Any, generated: Generated) -> dict[str, Any]:
    """A1111's generation-info JSON (the `info` string ESD clients parse; `infotexts` is the key they need)."""
    from .request.samplers import label

    sampler, _ = label(request.sampler, request.schedule)
    seeds, infotexts = generated.seeds, generated.infotexts
    subseeds = generated.subseeds if request.subseed_strength and generated.subseeds else [-1] * len(seeds)
    total = len(seeds)
    return {
        "prompt": request.prompt,
        "all_prompts": [request.prompt] * total,
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [request.negative_prompt] * total,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": subseeds[0],
        "all_subseeds": subseeds,
        "subseed_strength": request.subseed_strength,
        "width": request.width,
        "height": request.height,
        "sampler_name": sampler,
        "cfg_scale": request.cfg_scale,
        "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model.checkpoint.stem,
        "sd_model_hash": model.checkpoint.short_hash,
        "sd_vae_name": model.vae.stem if model.vae else None,
        "sd_vae_hash": model.vae.short_hash if model.vae else None,
        "seed_resize_from_w": request.seed_resize_from[0] if request.seed_resize_from else -1,
        "seed_resize_from_h": request.seed_resize_from[1] if request.seed_resize_from else -1,
        "denoising_strength": request.denoising_strength if request.task == "img2img" else None,
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": infotexts,
        "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "clip_skip": request.clip_skip,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
