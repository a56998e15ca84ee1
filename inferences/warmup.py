"""A worker's warm-up (issue 28.3): before it takes a message or reports itself live, it generates one small
picture at each of ESD_ENGINE_WARMUP's sizes with the checkpoint its endpoint ran last, so the model is loaded (and,
with ESD_ENGINE_COMPILE, the graphs for those sizes compiled or loaded from the data directory's cache) before the
first job, not during it. An endpoint that has run no job yet, or a warm-up that fails, leaves the worker cold, said
in its log; it never stops it from starting."""

import logging
import time
from typing import Any

from django.conf import settings

from checkpoints.cache import cached_path
from checkpoints.models import CheckpointFile
from endpoints.models import Endpoint

from .engine.request.options import JobFiles, ModelFile
from .engine.request.plan import planned_checkpoint
from .engine_options import engine_for
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
    for width, height in sizes:
        started = time.monotonic()
        payload = {"prompt": "", "steps": 2, "width": width, "height": height, "seed": 0, "sampler_name": "Euler"}
        engine.run("txt2img", payload, files)
        logger.info("Warmed up %s at %dx%d with %s in %.1f s", endpoint.name, width, height, file.name,
                    time.monotonic() - started)  # fmt: skip
    return len(sizes)
