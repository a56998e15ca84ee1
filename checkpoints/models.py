"""Model files ("checkpoints") kept in object storage."""

import uuid

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from accounts.grants import visibility_names
from esd.models import TimeStampedModel


class CheckpointType(models.TextChoices):
    STABLE_DIFFUSION = "Stable-diffusion"
    EMBEDDINGS = "embeddings"
    LORA = "Lora"
    HYPERNETWORKS = "hypernetworks"
    CONTROLNET = "ControlNet"
    VAE = "VAE"
    # Beyond ESD 1.4.0 (whose workers kept upscalers in their image): ESRGAN-family .safetensors models, for
    # extra-single-image and the hires fix.
    UPSCALER = "Upscaler"


class CheckpointStatus(models.TextChoices):
    INITIAL = "Initial"  # multipart upload started; files not assembled yet
    ACTIVE = "Active"
    DISABLED = "Disabled"
    # Beyond ESD 1.4.0, which its clients never list (they ask for status=Active):
    DOWNLOADING = "Downloading"
    FAILED = "Failed"


class Checkpoint(TimeStampedModel):
    """One model "folder" in storage, `{type}/checkpoint/custom/{id}/`, holding one or more files.

    Who sees it and who owns it are guardian grants (accounts/grants.py); ESD's `allowed_roles_or_users` list is
    read from them. `params` is ESD's free object (the client's `message` and `creator`, plus `created` and
    `multipart_upload`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=32, choices=CheckpointType.choices)
    status = models.CharField(max_length=16, choices=CheckpointStatus.choices, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    everyone = models.BooleanField(
        "visible to everyone",
        default=False,
        help_text="Every user may see and use it (ESD's `*` in allowed_roles_or_users). Otherwise the roles and users "
        "given the view permission on its Object permissions page may.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="checkpoints"
    )
    source_url = models.URLField(max_length=2048, blank=True)
    error = models.TextField(blank=True)
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    download_lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A running download renews this every second; a Downloading checkpoint whose lease ran out is not "
        "being downloaded by anyone.",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        names = ", ".join(self.names) or "(no file)"
        return f"{names} [{self.type}]"

    @property
    def folder(self) -> str:
        return f"{self.type}/checkpoint/custom/{self.id}"

    @property
    def names(self) -> list[str]:
        return [file.name for file in self.files.all()]

    def key(self, name: str) -> str:
        return f"{self.folder}/{name}"

    @property
    def allowed_roles_or_users(self) -> list[str]:
        return visibility_names(self)


class CheckpointFile(models.Model):
    """A file of a checkpoint. Names are unique across all checkpoints (ESD refuses a second file of the same
    name); sha256 and size are known once the file is stored and checked."""

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="files")
    name = models.CharField(max_length=255, unique=True)
    position = models.PositiveSmallIntegerField(default=0)
    upload_id = models.CharField(max_length=1024, blank=True, help_text="Unfinished multipart upload, if any.")
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    # Known from the content once checked, so a rename that drops the extension (as ESD's does) loses nothing.
    format = models.CharField(max_length=16, blank=True, choices=[("safetensors", "safetensors"), ("yaml", "yaml")])

    class Meta:
        ordering = ["checkpoint", "position"]

    def __str__(self) -> str:
        return self.name

    @property
    def key(self) -> str:
        return self.checkpoint.key(self.name)


class CheckpointUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Checkpoint, on_delete=models.CASCADE)


class CheckpointGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Checkpoint, on_delete=models.CASCADE)
