"""A worker's warm-up (issue 28.3): before it takes a message or reports itself live, it generates small pictures at
each of ESD_ENGINE_WARMUP's sizes with the checkpoint its endpoint ran last, so the model is loaded before the first
job, not during it. With ESD_ENGINE_COMPILE it runs one loop per UNet bucket the worker can meet (a batch-8 job, 16
dynamically batched images: compiling.warm_up_images), so every graph is compiled, or loaded from the data
directory's cache, before a job waits for it. An endpoint that has run no job yet, or a warm-up that fails, leaves
the worker cold, said in its log; it never stops it from starting."""

import logging
import time
from typing import Any

from django.conf import settings

from checkpoints.cache import cached_path
from checkpoints.models import CheckpointFile
from endpoints.models import Endpoint

from .batching import batch_window
from .engine.models.compiling import warm_up_images
from .engine.request.options import JobFiles, ModelFile
from .engine.request.plan import planned_checkpoint
from .engine.runner import Job
from .engine_options import engine_for, engine_limits
from .models import InferenceJob, JobState

logger = logging.getLogger(__name__)


def last_checkpoint(endpoint: Endpoint) -> CheckpointFile | None:
    """The checkpoint file of the endpoint's latest succeeded job (from its plan), if that file still exists."""
    plans = (
        InferenceJob.objects.filter(endpoint=endpoint, state=JobState.SUCCEEDED, plan__isnull=False)
        .order_by("-complete_time")
        .values_list("plan", flat=True)[:20]
    )
    for plan in plans:
        planned = planned_checkpoint(plan)
        if planned is not None:
            file = CheckpointFile.objects.filter(name=planned.name, sha256=planned.sha256).first()
            if file is not None:
                return file
    return None


def warm_up(*, endpoint: Endpoint, device: str, **kwargs: Any) -> int:
    """esd.signals.worker_starting receiver: the pictures made (0: no warm-up)."""
    sizes = settings.ESD_ENGINE_WARMUP
    if not sizes:
        return 0
    file = last_checkpoint(endpoint)
    if file is None:
        logger.info("Warm-up of %s skipped: no job has run on it yet, so no checkpoint to warm up with", endpoint.name)
        return 0
    engine = engine_for(device)
    files = JobFiles(checkpoint=ModelFile(cached_path(file), file.name, file.sha256))
    counts = warm_up_counts(device)
    for width, height in sizes:
        started = time.monotonic()
        for images in counts:
            jobs = [Job("txt2img", payload, files) for payload in warm_up_jobs(images, width, height)]
            for outcome in engine.run_batch(jobs):
                if isinstance(outcome, Exception):  # the worker starts cold, with the reason in its log
                    raise outcome
        logger.info("Warmed up %s at %dx%d with %s (%s images a loop) in %.1f s", endpoint.name, width, height,
                    file.name, ", ".join(map(str, counts)), time.monotonic() - started)  # fmt: skip
    return len(sizes)


def warm_up_counts(device: str) -> list[int]:
    """The images of each warm-up loop at a size: one loads the model; a compiled worker runs one loop per UNet
    bucket, up to the most images one loop takes here (a job's batch, or ESD_MAX_BATCH_IMAGES where batching is
    on)."""
    if settings.ESD_ENGINE_COMPILE == "off":
        return [1]
    most = max(engine_limits().max_batch_size, settings.ESD_MAX_BATCH_IMAGES if batch_window(device) > 0 else 1)
    return warm_up_images(device, most)


def warm_up_jobs(images: int, width: int, height: int) -> list[dict[str, Any]]:
    """Payloads of one loop of `images` pictures: jobs of at most a job's batch size, sharing a batch key."""
    largest = engine_limits().max_batch_size
    sizes = [largest] * (images // largest) + ([images % largest] if images % largest else [])
    return [
        {"prompt": "", "steps": 2, "width": width, "height": height, "seed": index, "sampler_name": "Euler",
         "batch_size": size}
        for index, size in enumerate(sizes)
    ]  # fmt: skip
