"""Checkpoint shapes as ESD wrote them (esd-behaviour.md §7.6-7.8)."""

from typing import Any

from checkpoints.models import Checkpoint, CheckpointStatus
from esd.storage import get_storage


def checkpoint_data(checkpoint: Checkpoint) -> dict[str, Any]:
    """The create/update shape (`s3_location`)."""
    return {
        "id": str(checkpoint.pk),
        "type": checkpoint.type,
        "s3_location": get_storage().uri(checkpoint.folder),
        "status": checkpoint.status,
        "params": checkpoint.params,
    }


def checkpoint_item(checkpoint: Checkpoint) -> dict[str, Any]:
    """The list shape (`s3Location`, `name`, `created` as a decimal string)."""
    item = {
        "id": str(checkpoint.pk),
        "s3Location": get_storage().uri(checkpoint.folder),
        "type": checkpoint.type,
        "status": checkpoint.status,
        "name": checkpoint.names,
        "created": f"{checkpoint.created_at.timestamp():.6f}",
        "params": checkpoint.params,
        "allowed_roles_or_users": checkpoint.allowed_roles_or_users,
    }
    if checkpoint.status == CheckpointStatus.FAILED:
        item["error"] = checkpoint.error
    if checkpoint.status == CheckpointStatus.DOWNLOADING:
        item["progress"] = {"bytes_done": checkpoint.bytes_done, "bytes_total": checkpoint.bytes_total}
    return item
