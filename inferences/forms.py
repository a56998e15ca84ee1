"""The admin's Generate page form: what a person fills in to run txt2img or img2img as themselves."""

import base64
from typing import Any

from django import forms

from accounts.models import User
from checkpoints.models import Checkpoint, CheckpointType

from . import selectors
from .engine.errors import EngineError
from .engine.request.controlnet_payload import PREPROCESSORS
from .engine.request.hires_payload import LATENT_UPSCALERS, PIXEL_UPSCALERS
from .engine.request.infotext_reader import SCRIPT_FIELDS, TXT2IMG_FIELDS, hires_enabled, parse_infotext
from .engine.request.samplers import NAMES, SAMPLERS, SCHEDULE_LABELS, resolve_sampler

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
    vae = forms.ChoiceField(required=False, label="VAE", help_text="Active VAE models you may use.")
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
    mask = forms.CharField(
        required=False, widget=forms.HiddenInput, help_text="Image to image: what the canvas painted (a PNG data URL)."
    )
    inpainting_fill = forms.TypedChoiceField(
        choices=[(0, "fill"), (1, "original"), (2, "latent noise"), (3, "latent nothing")], coerce=int, initial=1,
        label="Masked content", required=False,
    )  # fmt: skip
    mask_blur = forms.IntegerField(min_value=0, max_value=64, initial=4, label="Mask blur", required=False)
    inpaint_full_res = forms.TypedChoiceField(
        choices=[(0, "whole picture"), (1, "only masked")], coerce=int, initial=0, label="Inpaint area",
        required=False,
    )  # fmt: skip
    inpaint_full_res_padding = forms.IntegerField(
        min_value=0, max_value=256, initial=32, label="Only masked padding", required=False
    )
    denoising_strength = forms.FloatField(
        min_value=0, max_value=1, initial=0.75, required=False, help_text="Image to image, and the hires fix's pass."
    )
    controlnet_model = forms.ChoiceField(
        required=False, label="ControlNet model", help_text="Active ControlNet models you may use (none: off)."
    )
    controlnet_image = forms.ImageField(
        required=False, label="ControlNet image", help_text="What guides the picture (image to image: the start)."
    )
    controlnet_module = forms.ChoiceField(
        choices=[(name, name) for name in PREPROCESSORS], initial="canny", label="Preprocessor", required=False
    )
    controlnet_weight = forms.FloatField(
        min_value=0, max_value=2, initial=1.0, label="ControlNet weight", required=False
    )
    enable_hr = forms.BooleanField(required=False, label="Hires fix", help_text="Text to image: upscale, then refine.")
    hr_scale = forms.FloatField(min_value=1, max_value=4, initial=2.0, label="Hires upscale by", required=False)
    hr_upscaler = forms.ChoiceField(label="Hires upscaler", required=False)
    hr_second_pass_steps = forms.IntegerField(
        min_value=0, max_value=150, initial=0, label="Hires steps", required=False, help_text="0: as many as Steps."
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        usable = selectors.usable_checkpoints(user=user, type=CheckpointType.STABLE_DIFFUSION)
        names = sorted({name for checkpoint in usable for name in checkpoint.names})
        self.checkpoint_names = names
        self.fields["checkpoint"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]
        self.fields["checkpoint"].initial = default_checkpoint(user, usable, names)
        self.fields["vae"].choices = [("", "Automatic")] + [  # type: ignore[attr-defined]
            (name, name) for name in _names(user, CheckpointType.VAE)
        ]
        self.fields["controlnet_model"].choices = [("", "none")] + [  # type: ignore[attr-defined]
            (name, name) for name in _names(user, CheckpointType.CONTROLNET)
        ]
        upscalers = [*LATENT_UPSCALERS, *PIXEL_UPSCALERS, *_names(user, CheckpointType.UPSCALER)]
        self.fields["hr_upscaler"].choices = [(name, name) for name in upscalers]  # type: ignore[attr-defined]
        # the extra networks' pickers: what a prompt may name (A1111's tags use the file's stem)
        self.lora_names = [name.rsplit(".", 1)[0] for name in _names(user, CheckpointType.LORA)]
        self.embedding_names = [name.rsplit(".", 1)[0] for name in _names(user, CheckpointType.EMBEDDINGS)]
        endpoints = selectors.usable_endpoints(user=user, inference_type="Async")
        self.on_cpu = bool(endpoints) and all(selectors.runs_on_cpu(endpoint) for endpoint in endpoints)
        if self.on_cpu:
            for name, value in CPU_DEFAULTS.items():
                self.fields[name].initial = value

    # The studio's groups of fields, in generate.html's order; then its folding sections
    GROUPS = {
        "prompts": ("prompt", "negative_prompt"),
        "settings": (
            "task", "checkpoint", "vae", "width", "height", "steps", "sampler", "cfg_scale", "seed", "batch_size",
            "denoising_strength",
        ),
        "inpainting": ("inpainting_fill", "mask_blur", "inpaint_full_res", "inpaint_full_res_padding"),
    }  # fmt: skip
    SECTIONS = (
        ("ControlNet", ("controlnet_model", "controlnet_image", "controlnet_module", "controlnet_weight")),
        ("Hires fix", ("enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps")),
    )

    def groups(self) -> dict[str, list[Any]]:
        """The bound fields of each of GROUPS."""
        return {group: [self[name] for name in names] for group, names in self.GROUPS.items()}

    def sections(self) -> list[tuple[str, list[Any]]]:
        """The folding sections: ControlNet, then the hires fix."""
        return [(title, [self[name] for name in names]) for title, names in self.SECTIONS]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("task") == "img2img" and not data.get("init_image"):
            self.add_error("init_image", "Image to image needs a starting picture.")
        if data.get("controlnet_model") and data.get("task") == "txt2img" and not data.get("controlnet_image"):
            self.add_error("controlnet_image", "A ControlNet unit needs an image to follow.")
        if data.get("enable_hr") and data.get("task") != "txt2img":
            self.add_error("enable_hr", "The hires fix is for text to image (as in A1111).")
        if data.get("mask"):
            data["mask"] = _data_url_png(data["mask"])
            if data["mask"] is None:
                self.add_error("mask", "The mask is not a PNG picture; paint it again.")
        return data

    def models(self) -> dict[str, list[str]]:
        """The job's models: the checkpoint, the LoRAs and embeddings its prompts name, and the ControlNet and
        upscaler the form chose."""
        data = self.cleaned_data
        models: dict[str, list[str]] = {CheckpointType.STABLE_DIFFUSION: [data["checkpoint"]]}
        prompts = [data["prompt"], data.get("negative_prompt") or ""]
        models |= selectors.prompt_network_files(user=self.user, prompts=prompts)
        if data.get("vae"):
            models[CheckpointType.VAE] = [data["vae"]]
        if data.get("controlnet_model"):
            models[CheckpointType.CONTROLNET] = [data["controlnet_model"]]
        upscaler = data.get("hr_upscaler")
        if data.get("enable_hr") and upscaler and upscaler not in LATENT_UPSCALERS and upscaler not in PIXEL_UPSCALERS:
            models[CheckpointType.UPSCALER] = [upscaler]
        return models

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
        if data.get("vae"):  # as ESD clients pick one: the file among the job's models, named in override_settings
            payload["override_settings"] = {"sd_vae": data["vae"]}
        if data["task"] == "img2img":
            payload["init_images"] = [_base64(data["init_image"])]
            payload["denoising_strength"] = data.get("denoising_strength") or 0.75
            if data.get("mask"):  # as ESD clients send it: white where the picture is painted again
                payload["mask"] = data["mask"]
                payload["inpainting_fill"] = 1 if data.get("inpainting_fill") is None else data["inpainting_fill"]
                payload["mask_blur"] = 4 if data.get("mask_blur") is None else data["mask_blur"]
                # A1111's UI: "Whole picture" unless asked, padding 32 (its API's defaults differ: 1 and 0)
                payload["inpaint_full_res"] = data.get("inpaint_full_res") or 0
                padding = data.get("inpaint_full_res_padding")
                payload["inpaint_full_res_padding"] = 32 if padding is None else padding
        if data.get("controlnet_model"):
            unit: dict[str, Any] = {
                "enabled": True,
                "model": data["controlnet_model"].rsplit(".", 1)[0],
                "module": data.get("controlnet_module") or "none",
                "weight": 1.0 if data.get("controlnet_weight") is None else data["controlnet_weight"],
                "resize_mode": "Crop and Resize",
                "pixel_perfect": True,
            }
            if data.get("controlnet_image"):
                unit["image"] = _base64(data["controlnet_image"])
            payload["alwayson_scripts"] = {"controlnet": {"args": [unit]}}
        if data.get("enable_hr"):
            payload.update(
                enable_hr=True,
                hr_scale=data.get("hr_scale") or 2.0,
                hr_upscaler=data.get("hr_upscaler") or "Latent",
                hr_second_pass_steps=data.get("hr_second_pass_steps") or 0,
                denoising_strength=0.5 if data.get("denoising_strength") is None else data["denoising_strength"],
            )
        return payload


def _names(user: User, kind: str) -> list[str]:
    return sorted(
        {name for checkpoint in selectors.usable_checkpoints(user=user, type=kind) for name in checkpoint.names}
    )


def _data_url_png(value: str) -> str | None:
    """A canvas's `data:image/png;base64,...` as the payload's base64, or None when it is not a PNG."""
    prefix = "data:image/png;base64,"
    if not value.startswith(prefix):
        return None
    encoded = value[len(prefix) :]
    try:
        head = base64.b64decode(encoded[:16], validate=True)
    except ValueError:
        return None
    return encoded if head.startswith(b"\x89PNG") else None


class GalleryForm(forms.Form):
    """The gallery's filters; each offers the values the viewer's pictures have."""

    model = forms.ChoiceField(required=False)
    sampler = forms.ChoiceField(required=False)
    endpoint = forms.ChoiceField(required=False)
    user = forms.CharField(required=False, max_length=150)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, choices: dict[str, list[str]], everyone: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, column in (("model", "model_name"), ("sampler", "sampler_name"), ("endpoint", "endpoint_name")):
            self.fields[name].choices = [("", "any"), *((value, value) for value in choices[column])]  # type: ignore[attr-defined]
        if not everyone:
            del self.fields["user"]

    def filter(self) -> selectors.GalleryFilter:
        data = self.cleaned_data
        return selectors.GalleryFilter(
            model=data.get("model") or "", sampler=data.get("sampler") or "", endpoint=data.get("endpoint") or "",
            user=data.get("user") or "", since=data.get("since"), until=data.get("until"),
        )  # fmt: skip


def _base64(upload: Any) -> str:
    upload.seek(0)
    return base64.b64encode(upload.read()).decode()


# The Generate page's settings a person gets back: after a job, the next visit starts from them; a job's "Edit
# settings" starts from that job's.
REMEMBERED = (
    "task", "checkpoint", "vae", "prompt", "negative_prompt", "width", "height", "steps", "sampler", "cfg_scale", "seed",
    "batch_size", "denoising_strength", "enable_hr", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
)  # fmt: skip


def remembered(cleaned: dict[str, Any]) -> dict[str, Any]:
    """The form's values worth keeping in the session (JSON: no pictures)."""
    return {key: cleaned[key] for key in REMEMBERED if isinstance(cleaned.get(key), str | int | float | bool)}


def settings_of_job(payload: dict[str, Any], task: str, checkpoint: str | None) -> dict[str, Any]:
    """A job's payload as the Generate form's initial values (A1111's keys to the form's)."""
    values = remembered(payload)
    if isinstance(payload.get("sampler_name"), str):
        values["sampler"] = payload["sampler_name"]
    overrides = payload.get("override_settings")
    if isinstance(overrides, dict) and isinstance(overrides.get("sd_vae"), str):
        values["vae"] = overrides["sd_vae"]
    values["task"] = task
    if checkpoint:
        values["checkpoint"] = checkpoint
    return values


# A1111's paste fields (infotext_reader's, with their API names) that are fields of this form, and two of its img2img
# tab's, which A1111 binds to no API name
PASTED = {
    label: key
    for label, key, _ in (*TXT2IMG_FIELDS, *SCRIPT_FIELDS)
    if isinstance(label, str) and key in GenerateForm.base_fields
} | {"Mask blur": "mask_blur", "Masked area padding": "inpaint_full_res_padding"}
# Labels whose values are words A1111's UI shows -> the form's field and its values
WORDS = {
    "Masked content": ("inpainting_fill", {"fill": 0, "original": 1, "latent noise": 2, "latent nothing": 3}),
    "Inpaint area": ("inpaint_full_res", {"Whole picture": 0, "Only masked": 1}),
}
# Read with another field, or only describing the picture: not "unmapped"
CONSUMED = {"Sampler", "Schedule type", "Model", "Model hash", "Version"}


def settings_from_infotext(text: str, form: GenerateForm) -> tuple[dict[str, Any], list[str]]:
    """A1111's PNG Info → "Send to txt2img": the form's values from a picture's infotext, and the fields it could not
    map ("Key: value"), so the person knows what the form leaves out."""
    fields = parse_infotext(text)
    values: dict[str, Any] = {}
    unmapped: list[str] = []
    for label, value in fields.items():
        if label in WORDS and value in WORDS[label][1]:
            values[WORDS[label][0]] = WORDS[label][1][value]
            continue
        name = PASTED.get(label)
        if name is None:
            if label not in CONSUMED:
                unmapped.append(f"{label}: {value}")
            continue
        field = form.fields[name]
        try:
            cleaned = field.clean(field.to_python(value))
        except forms.ValidationError as exc:
            unmapped.append(f"{label}: {value} ({' '.join(exc.messages)})")
            continue
        values[name] = cleaned
    if "Sampler" in fields:
        sampler = _sampler_choice(fields["Sampler"], fields.get("Schedule type"))
        if sampler is None:
            unmapped.append(f"Sampler: {fields['Sampler']}")
        else:
            values["sampler"] = sampler
    values["enable_hr"] = hires_enabled(fields)
    if values["enable_hr"] or "Denoising strength" not in fields:
        values["task"] = "txt2img"
    if "Model" in fields:
        checkpoint = _checkpoint_choice(fields["Model"], fields.get("Model hash", ""), form)
        if checkpoint is None:
            unmapped.append(f"Model: {fields['Model']} (not among the checkpoints you may use)")
        else:
            values["checkpoint"] = checkpoint
    return values, unmapped


def _sampler_choice(name: str, schedule: str | None) -> str | None:
    """The form's sampler for A1111's Sampler and Schedule type fields: the name alone where the schedule is the
    sampler's own (or Automatic), else the legacy name that carries it ("DPM++ 2M Karras"); None: not offered."""
    try:
        canonical, chosen = resolve_sampler(name, schedule)
    except EngineError:
        return None
    sampler = SAMPLERS[canonical]
    if chosen is None or chosen == sampler.schedule:
        return canonical
    legacy = f"{canonical} {SCHEDULE_LABELS[chosen]}"
    return legacy if legacy in NAMES else None


def _checkpoint_choice(model: str, model_hash: str, form: GenerateForm) -> str | None:
    """The person's checkpoint the infotext's `Model` names (its file stem, as A1111 writes it), or its hash."""
    by_stem = {name.rsplit(".", 1)[0]: name for name in form.checkpoint_names}
    if model in by_stem:
        return by_stem[model]
    if model_hash:
        usable = selectors.usable_checkpoints(user=form.user, type=CheckpointType.STABLE_DIFFUSION)
        for checkpoint in usable:
            for file in checkpoint.files.all():
                if file.sha256.startswith(model_hash.lower()) and file.name in form.checkpoint_names:
                    return str(file.name)
    return None
