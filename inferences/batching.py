"""Dynamic batching on the worker: the job it took, and the queued jobs of its endpoint that can share its
denoising loop.

At start a job's plan gets its batch key (engine/request/batch_key.py, with the model files it picked: same
checkpoint, VAE and LoRAs) and its image count. A worker that claims a job with a key looks, for at most the batch window, for queued
jobs of the same endpoint and key, and claims each with the same conditional UPDATE as any claim: a job another
worker took first is simply not in the batch, and a worker killed mid-batch leaves every job of it held by a dead
worker, recovered as any other (the sweep or their own messages). The messages of the companions stay in the
broker; when they come, their jobs are running here or finished, and they are dropped.
"""

from __future__ import annotations

import time

from django.conf import settings

from endpoints.models import Worker

from . import transitions
from .models import InferenceJob, JobState

POLL_SECONDS = 0.005


def batch_window(device: str) -> float:
    """Seconds a worker on `device` waits for companions; 0: batching is off."""
    window = settings.ESD_BATCH_WINDOW_MS
    if window < 0:  # unset: on where one UNet call at batch 1 leaves the device idle
        window = 25 if device.startswith("cuda") else 0
    return window / 1000


def take_companions(job: InferenceJob, worker: Worker | None, device: str) -> list[InferenceJob]:
    """Queued jobs that join `job`'s loop, claimed for `worker`, oldest first, within ESD_MAX_BATCH_IMAGES."""
    window = batch_window(device)
    if window <= 0 or not job.batch_key or job.endpoint_id is None:
        return []
    room = settings.ESD_MAX_BATCH_IMAGES - max(job.image_count, 1)
    deadline = time.monotonic() + window
    taken: list[InferenceJob] = []
    while room > 0:
        queued = (
            InferenceJob.objects.filter(
                endpoint_id=job.endpoint_id,
                batch_key=job.batch_key,
                state=JobState.QUEUED,
                image_count__lte=room,
            )
            .order_by("start_time")  # the job and the companions taken so far are claimed: not among these
            .values_list("pk", "image_count")[: settings.ESD_MAX_BATCH_IMAGES]
        )
        for pk, count in queued:
            if count > room:
                continue
            companion = transitions.claim(str(pk), worker, queued_only=True)
            if companion is not None:
                taken.append(companion)
                room -= max(count, 1)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    return taken
