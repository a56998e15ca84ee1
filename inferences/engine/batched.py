"""Dynamic batching: several txt2img jobs of one model through one k-diffusion loop, each getting the pictures it
would get alone.

The loop is the one `generate` runs (ksampling.sample); what changes is that its batch holds the images of several
jobs, in job order. Every image keeps what is its own: its noise (ImageNoise draws each image from its own seeded
generator, so a batch of concatenated seeds draws exactly what each job draws alone; the SDE samplers' Brownian
trees are per image too), its job's prompts, prompt editing and embeddings (SharedConditioning picks each job's
text in force at each step), its CFG scale (one per row), its progress and its cancellation: a job whose cancel
flag is seen at a step leaves the batch there (its rows cost no more UNet time) and the others go on. The jobs'
latents are decoded together, as many images per VAE call as `ModelRun.decode_rows` allows (on CUDA what free memory
holds: 16 batch-1 jobs decoded one by one left an H200 idle for 16 % of their time, issue 28.2; elsewhere one image
per call, the call it makes alone). On CPU each UNet call holds one image's rows, the call it makes alone
(invariance.py), so the images are identical to the last bit there, on any CPU.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from .errors import Cancelled, EngineError
from .generate import Generated, ModelRun, draw_seeds, embeddings, gpu_noise, loras, noise_notes
from .infotext import infotext
from .models.loading import LoadedModel
from .request.job_models import JobModels
from .request.options import Progress
from .request.payload import Generation, unhonoured_message
from .sampling import ksampling
from .sampling.preview import preview_jpeg

logger = logging.getLogger(__name__)


@dataclass
class Member:
    """One job of a batch."""

    request: Generation
    models: JobModels
    progress: Progress


@dataclass
class _Seat:
    """A member taken into the loop: its conditioning and its images' seeds."""

    index: int  # in `members`
    conditioning: ksampling.Conditioning
    seeds: list[int]
    subseeds: list[int]


ALONE = None  # the outcome of a member that must run by itself after all (see `generate_together`)


def generate_together(
    model: LoadedModel, members: list[Member], *, refuse_unhonoured: bool = False
) -> list[Generated | Exception | None]:
    """One outcome per member: its pictures, its own failure (an embedding that does not fit, Cancelled), or ALONE
    for a member this loop cannot take (its CFG call would split, or its token count differs from the batch's);
    the caller runs those by themselves. A failure of the shared loop itself makes every member ALONE, so that only
    the job at fault fails when they run one by one."""
    outcomes: list[Generated | Exception | None] = [ALONE] * len(members)
    leader = members[0].request
    run = ModelRun.of(model)
    size = (leader.width, leader.height)
    seated: list[_Seat] = []
    # where each job's noise is drawn, and what it cannot honour for it (the batch key keeps the source one per loop)
    on_device = [gpu_noise(member.request, run.device) for member in members]
    ignored_of = [
        [*member.request.ignored, *noise_notes(member.request, drawn)]
        for member, drawn in zip(members, on_device, strict=True)
    ]
    # LoRAs and embeddings are loaded outside inference mode: unloading them edits the modules' weights
    with loras(run.pipe, members[0].models) as lora_hashes:
        for index, member in enumerate(members):
            request = member.request
            try:
                if refuse_unhonoured and ignored_of[index]:
                    raise EngineError(unhonoured_message(ignored_of[index]))
                with embeddings(run.pipe, request, member.models) as texts, torch.inference_mode():
                    conditioning = run.conditioning(
                        request, texts, request.sampler, request.steps, size, request.batch_size
                    )
            except EngineError as exc:
                outcomes[index] = exc
                continue
            seated.append(_Seat(index, conditioning, *draw_seeds(request)))  # n_iter is 1: batch_size images
        groups: dict[int, list[_Seat]] = {}
        for seat in seated:
            tokens = _one_call_tokens(seat.conditioning)
            if tokens is not None:
                groups.setdefault(tokens, []).append(seat)
        for group in groups.values():
            if len(group) < 2:
                continue  # alone after all: a batch of one is the ordinary path
            started = time.perf_counter()
            try:
                with torch.inference_mode():
                    latents, cancelled = _denoise(run, leader, members, group)
                loop_seconds = time.perf_counter() - started
            except Cancelled:
                for seat in group:
                    outcomes[seat.index] = Cancelled()
                continue
            except Exception:  # the shared loop failed: each job runs alone, so only the one at fault fails
                logger.warning("A batch of %d jobs failed together; they run one by one", len(group), exc_info=True)
                continue
            # the rows of the jobs still there, decoded in as few VAE calls as the device allows
            starts = [sum(len(seat.seeds) for seat in group[:k]) for k in range(len(group))]
            kept = [
                row
                for seat, gone, start in zip(group, cancelled, starts, strict=True)
                if not gone
                for row in range(start, start + len(seat.seeds))
            ]
            with torch.inference_mode():
                decoded = iter(run.decode(latents[kept], leader.width, leader.height) if kept else [])
            for seat, gone in zip(group, cancelled, strict=True):
                index, seeds, subseeds = seat.index, seat.seeds, seat.subseeds
                request = members[index].request
                if gone:
                    outcomes[index] = Cancelled()
                    continue
                images = [next(decoded) for _ in seeds]
                outcomes[index] = Generated(
                    images=images,
                    seeds=seeds,
                    subseeds=subseeds,
                    infotexts=[
                        infotext(
                            request,
                            model,
                            model.vae,
                            seed,
                            lora_hashes,
                            subseed=subseeds[k],
                            control_notes=[],
                            gpu_noise=on_device[index],
                        )
                        for k, seed in enumerate(seeds)
                    ],
                    seconds=time.perf_counter() - started,
                    unet_seconds=loop_seconds,
                    unet_images=len(latents),
                    ignored=ignored_of[index],
                    gpu_noise=on_device[index],
                )
    return outcomes


def _one_call_tokens(conditioning: ksampling.Conditioning) -> int | None:
    """The token count of every text the job's CFG calls use, when [cond, uncond] go through the UNet together at
    every step (one count throughout); None when some call would split (a batch of one row takes other kernels)."""
    counts = {entry.tokens for _, entry in conditioning.cond} | {entry.tokens for _, entry in conditioning.uncond}
    return counts.pop() if len(counts) == 1 else None


def _denoise(
    run: ModelRun,
    leader: Generation,
    members: list[Member],
    group: list[_Seat],
) -> tuple[torch.Tensor, list[bool]]:
    """The shared loop: the group's images in one batch. Returns the latents and which members left (cancelled)."""
    seeds = [seed for seat in group for seed in seat.seeds]
    subseeds = [subseed for seat in group for subseed in seat.subseeds]
    shape = (4, leader.height // 8, leader.width // 8)
    noise = ksampling.ImageNoise(
        shape, seeds, run.device, leader.noise_seed_delta, subseeds=subseeds,
        subseed_strength=leader.subseed_strength, resize_from=leader.seed_resize_from,
        on_device=gpu_noise(leader, run.device),  # the batch key holds the noise source: the same for every job
    )  # fmt: skip
    sigmas = ksampling.sigmas_for(run.denoiser, leader.sampler, leader.schedule, leader.steps, sdxl=run.sdxl)
    x = ksampling.start_from_noise(leader.sampler, sigmas, noise.next())
    counts = [len(seat.seeds) for seat in group]
    shared = ksampling.SharedConditioning([seat.conditioning for seat in group], counts, [True] * len(group))
    scales = [members[seat.index].request.cfg_scale for seat in group]
    cfg: float | torch.Tensor = scales[0]
    if len(set(scales)) > 1:  # per-row CFG: the same float32 product as a job's own scalar scale
        per_row = [scale for scale, count in zip(scales, counts, strict=True) for _ in range(count)]
        cfg = torch.tensor(per_row, dtype=torch.float32, device=run.device)[:, None, None, None]
    progresses = [members[seat.index].progress for seat in group]
    starts = [sum(counts[:position]) for position in range(len(group))]
    total = leader.steps

    def on_step(step: int, denoised: torch.Tensor) -> None:
        done = min(step + 1, total)
        for position, progress in enumerate(progresses):
            if not shared.active[position]:
                continue
            if progress.cancelled():
                shared.active[position] = False
                continue
            progress.step(done, total)
            if progress.wants_preview(done):  # each job sees its own rows only
                rows = denoised[starts[position] : starts[position] + counts[position]]
                progress.preview(preview_jpeg(rows, run.sdxl))
        if not any(shared.active):
            raise Cancelled()

    latents = ksampling.sample(
        model_denoiser=run.denoiser, name=leader.sampler, sigmas=sigmas, x=x, noise=noise, conditioning=shared,
        cfg_scale=cfg, seeds=seeds, callback=on_step, eta=leader.eta, from_noise=True,
    )  # fmt: skip
    return latents, [not active for active in shared.active]
