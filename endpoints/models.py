"""Endpoints: named pools of worker processes that consume the endpoint's own queue."""

import uuid

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.grants import visibility_names
from esd.models import TimeStampedModel


class EndpointType(models.TextChoices):
    ASYNC = "Async"
    REAL_TIME = "Real-time"


class EndpointStatus(models.TextChoices):
    CREATING = "Creating"  # no worker has registered yet
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    FAILED = "Failed"  # its workers died (missed heartbeats); `error` says when
    STOPPED = "Stopped"  # beyond ESD: every worker stopped cleanly (SIGTERM, Ctrl-C); it serves again when one starts
    DELETING = "Deleting"  # workers are draining; the row goes when the last one exits


QUEUE_PREFIX = "endpoint."  # an endpoint's dramatiq queue is QUEUE_PREFIX + its name


class Endpoint(TimeStampedModel):
    """An ESD endpoint (a SageMaker endpoint in ESD): here, the workers serving the queue `queue_name`.

    `initial_instance_count` is ESD's `max_instance_number`. An autoscaled Async endpoint may scale to zero.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64, unique=True)
    endpoint_type = models.CharField(max_length=16, choices=EndpointType.choices)
    status = models.CharField(max_length=16, choices=EndpointStatus.choices, default=EndpointStatus.CREATING)
    instance_type = models.CharField(max_length=64)
    autoscaling = models.BooleanField(default=False)
    initial_instance_count = models.PositiveIntegerField(default=1)
    custom_docker_image_uri = models.CharField(max_length=512, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="endpoints"
    )
    end_time = models.DateTimeField(null=True, blank=True, help_text="Last time it became InService.")
    error = models.TextField(blank=True)
    last_probe_id = models.CharField(max_length=32, blank=True)
    last_probe_at = models.DateTimeField(null=True, blank=True, help_text="When a worker last answered a probe.")
    last_probe_worker = models.CharField(max_length=300, blank=True, help_text="host:pid of that worker.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def owner_group_or_role(self) -> list[str]:
        """ESD's list of the roles whose users' jobs it runs: the roles (and users) holding its view grant."""
        return visibility_names(self)

    @property
    def queue_name(self) -> str:
        return QUEUE_PREFIX + self.name

    @property
    def min_instance_count(self) -> int:
        """An autoscaled Async endpoint scales between 0 and its maximum (as ESD's did); others stay fixed."""
        if self.autoscaling and self.endpoint_type == EndpointType.ASYNC:
            return 0
        return self.initial_instance_count


class Worker(models.Model):
    """One worker process (or esd_serve thread) serving an endpoint. Alive while its heartbeat is recent."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="workers")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    device = models.CharField(max_length=32)
    started_at = models.DateTimeField(auto_now_add=True)
    last_heartbeat = models.DateTimeField(db_index=True)
    current_job = models.CharField(max_length=255, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set when it exited cleanly.")

    class Meta:
        ordering = ["endpoint", "started_at"]

    def __str__(self) -> str:
        return f"{self.hostname}:{self.pid} ({self.device})"


class EndpointUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Endpoint, on_delete=models.CASCADE)


class EndpointGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Endpoint, on_delete=models.CASCADE)
