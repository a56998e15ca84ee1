"""The admin's Generate page form: what a person fills in to run txt2img or img2img as themselves."""

import base64
from typing import Any

from django import forms

from accounts.models import User
from checkpoints.models import Checkpoint, CheckpointType

from . import selectors
from .engine.samplers import NAMES

SIZES = [(size, str(size)) for size in (64, 128, 256, 384, 512, 640, 768, 896, 1024)]


DEMO_CHECKPOINT = "tiny-sd1.safetensors"  # what `make run` imports (esd_demo), for a first image in seconds
# A first image on a CPU endpoint should take seconds, not minutes (a full SD 1.5 step at 512x512 takes ~11 s there).
CPU_DEFAULTS = {"width": 128, "height": 128, "steps": 10, "sampler": "Euler a"}


def default_checkpoint(user: User, usable: list[Checkpoint], names: list[str]) -> str | None:
    """The person's own newest model; until they have one, the demo model; else the first they may use."""
    own = [
        name
        for checkpoint in sorted(usable, key=lambda checkpoint: checkpoint.created_at, reverse=True)
        if checkpoint.created_by_id == user.pk
        for name in checkpoint.names
        if name != DEMO_CHECKPOINT
    ]
    if own:
        return own[0]
    if DEMO_CHECKPOINT in names:
        return DEMO_CHECKPOINT
    return names[0] if names else None


class GenerateForm(forms.Form):
    task = forms.ChoiceField(choices=[("txt2img", "Text to image"), ("img2img", "Image to image")], initial="txt2img")
    checkpoint = forms.ChoiceField(help_text="Active Stable-diffusion models you may use.")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=20_000)
    negative_prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=20_000)
    width = forms.TypedChoiceField(choices=SIZES, coerce=int, initial=512)
    height = forms.TypedChoiceField(choices=SIZES, coerce=int, initial=512)
    steps = forms.IntegerField(min_value=1, max_value=150, initial=20)
    sampler = forms.ChoiceField(choices=[(name, name) for name in NAMES], initial="DPM++ 2M Karras")
    cfg_scale = forms.FloatField(min_value=0, max_value=30, initial=7.0, label="CFG scale")
    seed = forms.IntegerField(min_value=-1, max_value=2**32 - 1, initial=-1, help_text="-1: random.")
    batch_size = forms.IntegerField(min_value=1, max_value=8, initial=1)
    init_image = forms.ImageField(required=False, help_text="Image to image: the starting picture.")
    denoising_strength = forms.FloatField(min_value=0, max_value=1, initial=0.75, required=False)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        usable = selectors.usable_checkpoints(user=user, type=CheckpointType.STABLE_DIFFUSION)
        names = sorted({name for checkpoint in usable for name in checkpoint.names})
        self.checkpoint_names = names
        self.fields["checkpoint"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]
        self.fields["checkpoint"].initial = default_checkpoint(user, usable, names)
        endpoints = selectors.usable_endpoints(user=user, inference_type="Async")
        self.on_cpu = bool(endpoints) and all(selectors.runs_on_cpu(endpoint) for endpoint in endpoints)
        if self.on_cpu:
            for name, value in CPU_DEFAULTS.items():
                self.fields[name].initial = value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("task") == "img2img" and not data.get("init_image"):
            self.add_error("init_image", "Image to image needs a starting picture.")
        return data

    def payload(self) -> dict[str, Any]:
        """The A1111 body an ESD client would upload for the same choices."""
        data = self.cleaned_data
        payload: dict[str, Any] = {
            "prompt": data["prompt"],
            "negative_prompt": data.get("negative_prompt") or "",
            "width": data["width"],
            "height": data["height"],
            "steps": data["steps"],
            "sampler_name": data["sampler"],
            "cfg_scale": data["cfg_scale"],
            "seed": data["seed"],
            "batch_size": data["batch_size"],
            "n_iter": 1,
        }
        if data["task"] == "img2img":
            image = data["init_image"]
            image.seek(0)
            payload["init_images"] = [base64.b64encode(image.read()).decode()]
            payload["denoising_strength"] = data.get("denoising_strength") or 0.75
        return payload
