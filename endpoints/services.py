"""Writes on endpoints and their workers: create, delete (drain), register, heartbeat, deregister, and the
status that follows from live workers (esd-behaviour.md §8; architecture.md §3)."""

import logging
import os
import re
import socket
import time
import uuid

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts import grants
from accounts.access import require
from accounts.models import User
from accounts.permissions import holds
from esd.errors import Forbidden, Invalid

from .models import Endpoint, EndpointStatus, EndpointType, Worker
from .selectors import endpoint_current, live_workers

logger = logging.getLogger(__name__)

ESD_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


def check_instance_type(instance_type: str) -> None:
    if not (ESD_INSTANCE_TYPE.match(instance_type) or instance_type in settings.ESD_INSTANCE_TYPES):
        raise Invalid(
            f"unknown instance_type {instance_type!r}: use an ESD name such as ml.g5.2xlarge, or one of "
            f"{', '.join(settings.ESD_INSTANCE_TYPES)} (ESD_INSTANCE_TYPES)",
        )


def endpoint_create_check(
    *,
    actor: User,
    suffix: str | None,
    endpoint_type: str,
    instance_type: str,
    count: int,
    autoscaling: bool,
    roles: list[str],
) -> str:
    """Refuse (esd.errors) if this endpoint may not be created; returns its full name."""
    if endpoint_type == "Serverless":
        raise Invalid("Serverless endpoint is not supported yet")
    if endpoint_type not in EndpointType.values:
        raise Invalid(f"endpoint_type must be Async or Real-time, not {endpoint_type!r}")
    if endpoint_type == EndpointType.REAL_TIME and autoscaling:
        raise Invalid("Autoscaling is not supported for real-time endpoint")
    require(actor, "endpoint.create")
    check_instance_type(instance_type)
    if count < 1:
        raise Invalid("initial_instance_count must be at least 1")
    check_capacity(instance_type, count)
    if not roles:
        raise Invalid("assign_to_roles must name at least one role")
    existing_roles = set(Group.objects.filter(name__in=roles).values_list("name", flat=True))
    missing = [role for role in roles if role not in existing_roles]
    if missing:
        raise Invalid(f'role "{missing[0]}" not exist')
    # A role holds one live endpoint, so assigning one's endpoint to a role decides where its users' jobs run: only
    # its members (or sagemaker_endpoint:all) may, or anyone could squat every role's one place.
    if not holds(actor, "sagemaker_endpoint", "all"):
        mine = set(actor.groups.filter(name__in=roles).values_list("name", flat=True))
        foreign = [role for role in roles if role not in mine]
        if foreign:
            raise Forbidden(
                f"{actor.username} may assign an endpoint only to its own roles, not to [{foreign[0]}] "
                "(sagemaker_endpoint:all may assign any)"
            )
    # ESD allows one endpoint per role, whatever its type (a role's users must know where their jobs go). One being
    # deleted no longer counts: ESD dropped it at once, and its draining workers take no new jobs.
    taken = grants.granted_roles(Endpoint.objects.exclude(status=EndpointStatus.DELETING), roles)
    if taken:
        raise Invalid(f"role [{taken[0]}] has a valid endpoint already, not allow to have another one")
    name = f"esd-{endpoint_type.lower()}-{suffix}" if suffix else ""
    clash = Endpoint.objects.filter(name=name).first() if name else None
    if clash is not None:
        # A draining endpoint still owns its name and queue until its last worker exits (seconds, one job at most).
        draining = (
            " (it is being deleted: try again once its workers have finished)"
            if clash.status == EndpointStatus.DELETING
            else ""
        )
        raise Invalid(f"Cannot create already existing model: {name}{draining}")
    return name


def check_capacity(instance_type: str, count: int) -> None:
    """Refuse instances the deployment cannot have, in the words of SageMaker's quota error, which ESD passed
    through and its clients look for (`ResourceLimitExceeded`). Endpoints being deleted no longer count."""
    live = Endpoint.objects.exclude(status=EndpointStatus.DELETING)
    quota = settings.ESD_INSTANCE_QUOTAS.get(instance_type)
    if quota is not None:
        used = live.filter(instance_type=instance_type).aggregate(total=Sum("initial_instance_count"))["total"] or 0
        if used + count > quota:
            # SageMaker's own words (CreateEndpoint's ResourceLimitExceeded), which ESD clients match on
            raise Invalid(
                f"ResourceLimitExceeded: The account-level service limit '{instance_type} for endpoint usage' is "
                f"{quota} Instances, with current utilization of {used} Instances and a request delta of {count} "
                "Instances. Please use AWS Service Quotas to request an increase for this quota."
            )
    elif count > settings.ESD_MAX_INSTANCES:
        raise Invalid(
            f"ResourceLimitExceeded: initial_instance_count must be from 1 to {settings.ESD_MAX_INSTANCES} "
            f"(ESD_MAX_INSTANCES, the limit of {instance_type} instances per endpoint); this request asks for {count}",
        )
    in_use = live.aggregate(total=Sum("initial_instance_count"))["total"] or 0
    if in_use + count > settings.ESD_MAX_TOTAL_INSTANCES:
        raise Invalid(
            f"ResourceLimitExceeded: the deployment allows {settings.ESD_MAX_TOTAL_INSTANCES} instances over all "
            f"endpoints (ESD_MAX_TOTAL_INSTANCES), with current utilization of {in_use} and a request delta of "
            f"{count}; delete an endpoint or raise the limit",
        )


@transaction.atomic
def endpoint_create(
    *,
    actor: User,
    suffix: str | None,
    endpoint_type: str,
    instance_type: str,
    count: int,
    autoscaling: bool,
    roles: list[str],
    image: str = "",
) -> Endpoint:
    """`POST /endpoints`: a `Creating` endpoint; it becomes InService when a worker serving it registers."""
    roles = list(dict.fromkeys(roles))
    list(Endpoint.objects.select_for_update().all())  # one creation at a time: the one-per-role rule holds
    name = endpoint_create_check(
        actor=actor, suffix=suffix, endpoint_type=endpoint_type, instance_type=instance_type, count=count,
        autoscaling=autoscaling, roles=roles,
    )  # fmt: skip
    endpoint = Endpoint(
        endpoint_type=endpoint_type,
        instance_type=instance_type,
        autoscaling=autoscaling,
        initial_instance_count=count,
        custom_docker_image_uri=image,
        created_by=actor,
    )
    endpoint.name = name or f"esd-{endpoint_type.lower()}-{str(endpoint.id)[:7]}"
    endpoint.save()
    grants.grant_new(endpoint, owner=actor, visible_to=roles)
    return endpoint


def may_delete(actor: User, endpoint: Endpoint) -> bool:
    return holds(actor, "sagemaker_endpoint", "all") or (
        holds(actor, "sagemaker_endpoint", "create") and grants.owns(actor, endpoint)
    )


def endpoint_delete_check(*, actor: User, endpoints: list[Endpoint]) -> None:
    """Refuse (esd.errors) if `actor` may not delete every one of these endpoints."""
    require(actor, "endpoint.delete")
    for endpoint in endpoints:
        if not may_delete(actor, endpoint):
            raise Forbidden(
                f"User {actor.username} may not delete {endpoint.name}: it needs sagemaker_endpoint:all, or "
                "sagemaker_endpoint:create and to be its creator",
            )


@transaction.atomic
def endpoint_delete_many(*, actor: User, endpoints: list[Endpoint]) -> int:
    """`DELETE /endpoints`: endpoints without live workers go at once; the others turn `Deleting`, their workers
    finish the job in hand and exit, and the last one to leave removes the row (so nothing is cut off mid-job)."""
    endpoint_delete_check(actor=actor, endpoints=endpoints)
    for endpoint in endpoints:
        if live_workers(endpoint).exists():
            Endpoint.objects.filter(pk=endpoint.pk).update(status=EndpointStatus.DELETING, updated_at=timezone.now())
        else:
            endpoint.delete()
    return len(endpoints)


# --- workers --------------------------------------------------------------------------------------------------------


def worker_register(*, endpoint: Endpoint, hostname: str, pid: int, device: str) -> Worker:
    worker = Worker.objects.create(
        endpoint=endpoint, hostname=hostname, pid=pid, device=device, last_heartbeat=timezone.now()
    )
    endpoint_refresh(endpoint)
    return worker


def worker_heartbeat(*, worker: Worker, current_job: str = "") -> bool:
    """Record that `worker` is alive. False when it should drain and exit (its endpoint is deleted or deleting)."""
    updated = Worker.objects.filter(pk=worker.pk, stopped_at__isnull=True).update(
        last_heartbeat=timezone.now(), current_job=current_job[:255]
    )
    endpoint = Endpoint.objects.filter(pk=worker.endpoint_id).first()
    if not updated or endpoint is None or endpoint.status == EndpointStatus.DELETING:
        return False
    endpoint_refresh(endpoint)
    return True


def worker_deregister(*, worker: Worker) -> None:
    """A clean exit: the worker is no longer counted; the last worker of a `Deleting` endpoint removes it."""
    Worker.objects.filter(pk=worker.pk).update(stopped_at=timezone.now(), current_job="")
    endpoint = Endpoint.objects.filter(pk=worker.endpoint_id).first()
    if endpoint is None:
        return
    if endpoint.status == EndpointStatus.DELETING and not live_workers(endpoint).exists():
        endpoint.delete()
        return
    endpoint_refresh(endpoint)


def endpoint_refresh(endpoint: Endpoint) -> Endpoint:
    """Store the status the live workers make (on a worker's registration, heartbeat and exit, and when a job is
    bound to the endpoint); reads compute the same without writing (selectors.endpoint_current)."""
    stored = (endpoint.status, endpoint.error, endpoint.end_time)
    current = endpoint_current(endpoint)
    changes = {
        field: getattr(current, field)
        for field, before in zip(("status", "error", "end_time"), stored, strict=True)
        if getattr(current, field) != before
    }
    if changes:
        Endpoint.objects.filter(pk=endpoint.pk).update(**changes, updated_at=timezone.now())
        if "status" in changes:
            logger.info("Endpoint %s is now %s (%d live workers)", endpoint.name, current.status, current.live_count)  # type: ignore[attr-defined]
    return current


# --- probes ---------------------------------------------------------------------------------------------------------


def endpoint_probe_send(*, endpoint: Endpoint, hold_seconds: float = 0.0) -> str:
    """Send a probe through the endpoint's queue; the worker that runs it records itself on the endpoint.
    `hold_seconds` keeps that worker busy for a while (to see a job in hand, or its redelivery)."""
    from esd.queues import send

    probe_id = uuid.uuid4().hex
    send("endpoint_probe", str(endpoint.pk), probe_id, hold_seconds, queue_name=endpoint.queue_name)
    return probe_id


def endpoint_probe_answer(*, endpoint_id: str, probe_id: str, hold_seconds: float) -> None:
    time.sleep(max(0.0, min(hold_seconds, 60.0)))
    Endpoint.objects.filter(pk=endpoint_id).update(
        last_probe_id=probe_id, last_probe_at=timezone.now(), last_probe_worker=f"{socket.gethostname()}:{os.getpid()}"
    )
