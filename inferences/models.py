"""Inference jobs: one row per ESD inference, the truth about its state (the broker only carries its id)."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Case, Value, When
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.grants import visibility_names
from esd.models import TimeStampedModel


class TaskType(models.TextChoices):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    REMBG = "rembg"
    EXTRA_SINGLE_IMAGE = "extra-single-image"
    EXTRA_BATCH_IMAGES = "extra-batch-images"


class InferenceType(models.TextChoices):
    ASYNC = "Async"
    REAL_TIME = "Real-time"
    SERVERLESS = "Serverless"


class JobStatus(models.TextChoices):
    """ESD's four statuses, as the wire has them: derived from the job's state, never written."""

    CREATED = "created"
    IN_PROGRESS = "inprogress"
    SUCCEED = "succeed"
    FAILED = "failed"


class JobState(models.TextChoices):
    """Where a job is (inferences/transitions.py changes it, one conditional UPDATE per change)."""

    CREATED = "created"  # waiting for its payload and `start` (a refused start leaves it here, with `error`)
    QUEUED = "queued"  # started: waiting for a worker to claim it
    RUNNING = "running"  # claimed: held by `worker` while that worker's heartbeat is live
    CANCELLING = "cancelling"  # running, asked to stop: its worker stops it at the next step
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # `error` says why
    CANCELLED = "cancelled"  # `error` says by whom


# The wire status of each state (ESD has no queued/running split and reports a cancelled job as failed)
WIRE_STATUS = {
    JobState.CREATED: JobStatus.CREATED,
    JobState.QUEUED: JobStatus.IN_PROGRESS,
    JobState.RUNNING: JobStatus.IN_PROGRESS,
    JobState.CANCELLING: JobStatus.IN_PROGRESS,
    JobState.SUCCEEDED: JobStatus.SUCCEED,
    JobState.FAILED: JobStatus.FAILED,
    JobState.CANCELLED: JobStatus.FAILED,
}
UNFINISHED = (JobState.CREATED, JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)
IN_PROGRESS = (JobState.QUEUED, JobState.RUNNING, JobState.CANCELLING)
HELD = (JobState.RUNNING, JobState.CANCELLING)  # a worker holds it (alive or not: see transitions)
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def _wire_status() -> Case:
    wire: dict[str, list[str]] = {}
    for state, status in WIRE_STATUS.items():
        wire.setdefault(status.value, []).append(state.value)
    return Case(*(When(state__in=states, then=Value(status)) for status, states in wire.items()))


class InferenceJob(TimeStampedModel):
    """An ESD inference job. Its files live in storage under `{task}/infer_v2/{id}/` (the payload) and
    `out/{id}/result/` (images and the result JSON), as in ESD."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    task_type = models.CharField(max_length=32, choices=TaskType.choices)
    inference_type = models.CharField(max_length=16, choices=InferenceType.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.CREATED, editable=False)
    # ESD's status, kept by the database from `state`: lists, filters and the API read it as a column
    status = models.GeneratedField(
        expression=_wire_status(),
        output_field=models.CharField(max_length=16, choices=JobStatus.choices),
        db_persist=True,
        db_index=True,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="inference_jobs"
    )
    # The endpoint named at creation (ESD's sagemaker_endpoint_name), then the one it was started on.
    endpoint = models.ForeignKey(
        "endpoints.Endpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    endpoint_name = models.CharField(max_length=64, blank=True)
    instance_type = models.CharField(max_length=64, blank=True)
    used_models = models.JSONField(default=dict, blank=True)
    payload_url = models.TextField(blank=True, help_text="The presigned upload URL handed out at creation.")
    prompt = models.TextField(blank=True, help_text="From the payload, for lists and search.")
    # what the job runs, from its plan at start, for the gallery's filters
    model_name = models.CharField(max_length=255, blank=True, help_text="The checkpoint file it runs.")
    sampler_name = models.CharField(max_length=64, blank=True, help_text="A1111's sampler name it runs.")
    start_time = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="When a worker took it (empty: not held).")
    worker = models.ForeignKey(
        "endpoints.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    message_id = models.CharField(
        max_length=36,
        blank=True,
        help_text="The broker message queued to run it; empty when none could be sent (the broker was down).",
    )
    complete_time = models.DateTimeField(null=True, blank=True)
    image_names = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, help_text="ESD's sagemakerRaw on failure: the reason.")
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    # the live preview while it runs (a small JPEG, ESD_PREVIEW_EVERY); dropped when it succeeds, kept when it fails or
    # is cancelled (where it stopped)
    preview = models.BinaryField(null=True, blank=True, editable=False)
    timings = models.JSONField(default=dict, blank=True)
    ignored_parameters = models.JSONField(default=list, blank=True)
    # Dynamic batching (inferences/batching.py): queued jobs of one endpoint with the same key may share one
    # denoising loop; "" for a job that always runs alone.
    # What `start` worked out from the payload (engine/request/plan.py): the checked request, the model files it
    # picked, its batch key and memory needs; the worker runs this. Its pictures are blobs under plan_folder.
    plan = models.JSONField(null=True, blank=True, editable=False)
    batch_key = models.CharField(max_length=40, blank=True, editable=False)
    image_count = models.PositiveSmallIntegerField(default=0, help_text="Images the payload asks for.")
    batch_id = models.UUIDField(
        null=True, blank=True, db_index=True, help_text="The denoising loop it ran in, shared with its batch."
    )
    batch_images = models.PositiveSmallIntegerField(default=0, help_text="Images in that loop (0: it ran alone).")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A page of the list is a backward range scan from its key, checking each job's grants as it goes
            models.Index(fields=["-created_at", "-id"], name="job_keyset"),
            # A worker's search for jobs to batch with the one it took: the queued ones of its endpoint and key
            models.Index(
                fields=["endpoint", "batch_key", "start_time"],
                name="job_batch_queue",
                condition=models.Q(state="queued"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_type} {self.id}"

    @property
    def owner_group_or_role(self) -> list[str]:
        """ESD's owner list, `[creator]` for every job made here: who holds its view grant."""
        return visibility_names(self)

    @property
    def payload_key(self) -> str:
        """Where the client PUTs api_param.json (the presigned URL's object)."""
        return f"{self.task_type}/infer_v2/{self.id}/api_param.json"

    @property
    def started_payload_key(self) -> str:
        """The payload as `start` checked it, frozen: the worker runs this copy, so a PUT to the still-valid
        presigned URL after start changes nothing (issue 26.7)."""
        return f"{self.task_type}/infer_v2/{self.id}/api_param.started.json"

    @property
    def plan_folder(self) -> str:
        """Where the plan's blobs are: the input pictures as sent, and long texts."""
        return f"{self.task_type}/infer_v2/{self.id}/plan/"

    @property
    def input_key(self) -> str:
        """The payload the job runs (ESD's input_body_s3): the frozen copy once started."""
        return self.payload_key if self.state == JobState.CREATED else self.started_payload_key

    @property
    def result_folder(self) -> str:
        return f"out/{self.id}/result/"

    @property
    def result_key(self) -> str:
        return f"{self.result_folder}{self.id}_param.json"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def cancelled(self) -> bool:
        return self.state == JobState.CANCELLED

    @property
    def display_status(self) -> str:
        """What a person is shown: ESD's status, with "cancelled", "cancelling" (asked to stop; its worker has not
        let go yet) and "refused" (its start was refused: it stays created, with the reason in `error`)."""
        if self.state in (JobState.CANCELLED, JobState.CANCELLING):
            return str(self.state)
        if self.state == JobState.CREATED and self.error:
            return "refused"
        return str(WIRE_STATUS[JobState(self.state)])

    @property
    def batch_share(self) -> float:
        """The part of its loop's images that were this job's (1.0 alone)."""
        return min(1.0, self.image_count / self.batch_images) if self.batch_images and self.image_count else 1.0

    @property
    def progress(self) -> float:
        if self.state == JobState.SUCCEEDED:
            return 1.0
        return self.progress_step / self.progress_total if self.progress_total else 0.0


class InferenceJobUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(InferenceJob, on_delete=models.CASCADE)


class InferenceJobGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(InferenceJob, on_delete=models.CASCADE)
