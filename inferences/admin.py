"""Admin for inference jobs: status, live progress, thumbnails, prompt, model, endpoint, durations; a job page
with its images; cancel and delete; and the Generate page, which runs a job as the logged-in person."""

import base64
import json
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from guardian.admin import GuardedModelAdmin

from esd.admin_helpers import CheckedDeletionMixin, VisibleChoicesFilter, actor_of, report
from esd.errors import Forbidden, Invalid, Refused
from esd.storage import get_storage

from . import selectors, services
from .api.serializers import image_urls
from .engine.request.images import png_parameters
from .forms import GalleryForm, GenerateForm, remembered, settings_from_infotext, settings_of_job
from .models import InferenceJob

LAST_SETTINGS = "esd_generate_settings"  # the session's copy of a person's last Generate settings

PARAMETER_LABELS = (
    ("prompt", "prompt"), ("negative_prompt", "negative prompt"), ("sampler_name", "sampler"), ("steps", "steps"),
    ("cfg_scale", "CFG scale"), ("width", "width"), ("height", "height"), ("batch_size", "batch size"),
    ("denoising_strength", "denoising strength"), ("clip_skip", "clip skip"), ("sd_model_name", "model"),
    ("sd_model_hash", "model hash"), ("sd_vae_name", "VAE"),
)  # fmt: skip


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = format_html_join("", "<th>{}</th>", ((cell,) for cell in header))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    return format_html('<table class="esd-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


def _stored_at(uri: str) -> str:
    """A job records its models' folders in ESD's `s3://bucket/key` form; show where the store really keeps them."""
    storage = get_storage()
    prefix = f"s3://{storage.bucket}/"
    return storage.location(uri[len(prefix) :]) if uri.startswith(prefix) else uri or "-"


def _seconds(key: str, value: Any) -> str:
    if key == "model_cache_hit":
        return "yes" if value else "no"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.3f} s" if key.endswith("seconds") else str(value)


class CreatorFilter(VisibleChoicesFilter):
    title = "creator"
    parameter_name = "creator"
    field, label = "created_by", "username"


@admin.register(InferenceJob)
class InferenceJobAdmin(CheckedDeletionMixin, GuardedModelAdmin):  # type: ignore[misc]
    # Few, narrow columns: the list must fit a laptop screen beside the admin's sidebar (endpoint, creator and
    # dates are filters and show on the job's page).
    list_display = (
        "short_id", "task_type", "status_label", "progress_bar", "thumbnail", "short_prompt", "checkpoint_name",
        "duration", "created",
    )  # fmt: skip
    list_filter = ("status", "task_type", "inference_type", CreatorFilter, "created_at")
    search_fields = ("id", "prompt", "created_by__username", "endpoint_name")
    list_select_related = ("created_by",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    readonly_fields = (
        "id", "task_type", "inference_type", "status_label", "progress_bar", "images", "prompt", "checkpoint_name",
        "endpoint_name", "instance_type", "created_by", "created_at", "start_time", "complete_time", "duration",
        "batch", "timings_table", "parameters_table", "infotext", "error", "ignored_list", "attempts", "models_table",
    )  # fmt: skip
    fields = readonly_fields
    actions = ["cancel_jobs", "delete_jobs"]
    change_form_template = "admin/inferences/inferencejob/change_form.html"  # type: ignore[misc]
    change_list_template = "admin/inferences/inferencejob/change_list.html"
    gallery_page = 24  # jobs' pictures per gallery page

    def get_queryset(self, request: HttpRequest) -> QuerySet[InferenceJob]:
        jobs = super().get_queryset(request)
        return selectors.visible_jobs(actor_of(request), jobs)

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        job = super().get_object(request, object_id, from_field)
        if job is not None:
            job.viewer = actor_of(request)  # the page's columns show only what this viewer may see (batch)
        return job

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs come from the API or the Generate page

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A job's page is read-only; the model-level answer opens its Object permissions page (guardian asks it)
        return obj is None and super().has_change_permission(request, obj)

    def get_urls(self) -> list[Any]:
        own = [
            path("generate/", self.admin_site.admin_view(self.generate_view), name="inferences_generate"),
            path("<uuid:job_id>/progress/", self.admin_site.admin_view(self.progress_view),
                 name="inferences_inferencejob_progress"),
            path("<uuid:job_id>/cancel/", self.admin_site.admin_view(self.cancel_view),
                 name="inferences_inferencejob_cancel"),
            path("<uuid:job_id>/again/", self.admin_site.admin_view(self.again_view),
                 name="inferences_inferencejob_again"),
            path("generate/png-info/", self.admin_site.admin_view(self.png_info_view), name="inferences_png_info"),
            path("gallery/", self.admin_site.admin_view(self.gallery_view), name="inferences_gallery"),
        ]  # fmt: skip
        return own + super().get_urls()

    # --- columns ---------------------------------------------------------------------------------------------

    @admin.display(description="job", ordering="id")
    def short_id(self, job: InferenceJob) -> str:
        return str(job.id)[:8]

    @admin.display(description="status", ordering="status")
    def status_label(self, job: InferenceJob) -> str:
        return job.display_status

    @admin.display(description="progress")
    def progress_bar(self, job: InferenceJob) -> str:
        return format_html(
            '<progress class="esd-progress" data-job="{}" max="100" value="{}" style="width:60px"></progress> '
            "<span>{}%</span>",
            job.id, round(job.progress * 100), round(job.progress * 100),
        )  # fmt: skip

    @admin.display(description="image")
    def thumbnail(self, job: InferenceJob) -> str:
        urls = image_urls(job)[:1]
        return format_html('<img src="{}" alt="" style="height:48px">', urls[0]) if urls else "-"

    @admin.display(description="prompt")
    def short_prompt(self, job: InferenceJob) -> str:
        return job.prompt[:40] + ("…" if len(job.prompt) > 40 else "")

    @admin.display(description="created", ordering="created_at")
    def created(self, job: InferenceJob) -> str:
        who = job.created_by.username if job.created_by else "-"
        return f"{who}, {timezone.localtime(job.created_at):%Y-%m-%d %H:%M}"

    @admin.display(description="model")
    def checkpoint_name(self, job: InferenceJob) -> str:
        return ", ".join(entry["model_name"] for entry in job.used_models.get("Stable-diffusion", [])) or "-"

    @admin.display(description="duration")
    def duration(self, job: InferenceJob) -> str:
        if job.start_time and job.complete_time:
            return f"{(job.complete_time - job.start_time).total_seconds():.2f} s"
        return "-"

    @admin.display(description="images")
    def images(self, job: InferenceJob) -> str:
        urls = image_urls(job)
        if not urls:
            return "-"
        # pictures come first, one per infotext; ControlNet's detected maps follow them, as A1111 returns them
        pictures = len(self._info(job).get("infotexts") or urls)
        return format_html_join(
            " ",
            '<figure style="display:inline-block;margin:0 8px 8px 0"><a href="{}"><img class="{}" src="{}" alt="{}" '
            'style="max-width:256px"></a><figcaption class="help">{}</figcaption></figure>',
            (
                (url, "esd-image" if index < pictures else "esd-detected-map", url, name,
                 name if index < pictures else f"{name}: ControlNet detected map")
                for index, (url, name) in enumerate(zip(urls, job.image_names, strict=True))
            ),
        )  # fmt: skip

    @admin.display(description="batch")
    def batch(self, job: InferenceJob) -> str:
        """Which denoising loop it ran in (dynamic batching) and its share of that loop's images."""
        if job.batch_id is None:
            return "ran alone" if job.finished else "-"
        # only the companions the viewer may see: another user's job in the same loop is not the viewer's to know of
        companions = InferenceJob.objects.filter(batch_id=job.batch_id).exclude(pk=job.pk)
        others = selectors.visible_jobs(job.viewer, companions).count()  # type: ignore[attr-defined]
        url = reverse("admin:inferences_inferencejob_changelist") + f"?batch_id={job.batch_id}"
        return format_html(
            '<a href="{}">{}</a>: {} of its {} images ({}%), with {} other job(s)',
            url, str(job.batch_id)[:8], job.image_count, job.batch_images, round(job.batch_share * 100), others,
        )  # fmt: skip

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        return lookup == "batch_id" or super().lookup_allowed(lookup, value, request)

    # --- the job page: readable tables, not JSON ---------------------------------------------------------------

    @admin.display(description="timings")
    def timings_table(self, job: InferenceJob) -> str:
        if not job.timings:
            return "-"
        return _table(
            ("what", "value"),
            [(key.replace("_", " "), _seconds(key, value)) for key, value in job.timings.items()],
        )

    def _info(self, job: InferenceJob) -> dict[str, Any]:
        """A1111's generation info of a finished job, read once per page (kept on the job object)."""
        if not hasattr(job, "_generation_info"):
            document = selectors.job_result_document(job) or {}
            try:
                info = json.loads(document.get("info") or "{}")
            except (TypeError, ValueError):
                info = {}
            job._generation_info = info if isinstance(info, dict) else {}  # type: ignore[attr-defined]
        return job._generation_info  # type: ignore[attr-defined]

    @admin.display(description="parameters")
    def parameters_table(self, job: InferenceJob) -> str:
        info = self._info(job) if job.finished else selectors.job_payload_summary(job)
        shown = [(label, info[key]) for key, label in PARAMETER_LABELS if info.get(key) not in (None, "", [])]
        if info.get("all_seeds"):
            shown.append(("seeds", ", ".join(str(seed) for seed in info["all_seeds"])))
        return _table(("parameter", "value"), shown) if shown else "-"

    @admin.display(description="infotext (PNG parameters)")
    def infotext(self, job: InferenceJob) -> str:
        texts = self._info(job).get("infotexts") or []
        if not texts:
            return "-"
        return format_html_join("", '<pre class="esd-infotext">{}</pre>', ((text,) for text in texts[:4]))

    @admin.display(description="ignored parameters")
    def ignored_list(self, job: InferenceJob) -> str:
        return ", ".join(job.ignored_parameters) or "none: every key of the payload was used"

    @admin.display(description="models")
    def models_table(self, job: InferenceJob) -> str:
        rows = [
            (model_type, entry.get("model_name", ""), _stored_at(str(entry.get("s3", ""))))
            for model_type, entries in job.used_models.items()
            for entry in entries
        ]
        return _table(("type", "name", "stored at"), rows) if rows else "-"

    # --- actions -----------------------------------------------------------------------------------------------

    @admin.action(description="Cancel selected jobs", permissions=["view"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[InferenceJob]) -> None:
        actor = actor_of(request)
        unfinished = [job for job in queryset if not job.finished]
        report(
            self, request, lambda: len([services.inference_cancel(actor=actor, job=job) for job in unfinished]),
            "{count} job(s) cancelled (running ones stop at their next step).",
        )  # fmt: skip

    @admin.action(description="Delete selected jobs and their images", permissions=["delete"])
    def delete_jobs(self, request: HttpRequest, queryset: QuerySet[InferenceJob]) -> None:
        chosen = list(queryset)
        report(
            self, request, lambda: services.inference_delete_many(actor=actor_of(request), jobs=chosen),
            "{count} job(s) deleted.",
        )  # fmt: skip

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # replaced by delete_jobs: storage goes too
        return actions

    def delete_check(self, request: HttpRequest, objs: list[Any]) -> None:
        actor = actor_of(request)
        if any(not services.may_change(actor, job) for job in objs):
            raise Forbidden("you may delete only your own jobs (or hold inference:all)")

    def delete_model(self, request: HttpRequest, obj: InferenceJob) -> None:
        services.inference_delete_many(actor=actor_of(request), jobs=[obj])

    # --- the Generate page and live progress ------------------------------------------------------------------

    def generate_view(self, request: HttpRequest) -> HttpResponse:
        """The studio: settings on the left, the running job's preview and then its pictures on the right. The
        page's script posts the form for JSON (`Accept: application/json`) and stays; without a script the post
        goes on to the job's page."""
        actor = actor_of(request)
        form = GenerateForm(
            request.POST or None, request.FILES or None, user=actor, initial=self._generate_initial(request)
        )
        wants_json = "application/json" in request.headers.get("Accept", "")
        if request.method == "POST" and form.is_valid():
            try:
                job = services.inference_submit(
                    actor=actor,
                    task_type=form.cleaned_data["task"],
                    models=form.models(),
                    payload=form.payload(),
                )
            except Refused as exc:
                form.add_error(None, exc.message)
            else:
                request.session[LAST_SETTINGS] = remembered(form.cleaned_data)
                if wants_json:
                    return JsonResponse(self._job_links(job) | {"endpoint": job.endpoint_name}, status=201)
                self.message_user(request, f"Job {job.id} started on {job.endpoint_name}.", messages.SUCCESS)
                return redirect(reverse("admin:inferences_inferencejob_change", args=[job.pk]))
        if request.method == "POST" and wants_json:
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        context = {
            **self.admin_site.each_context(request),
            "title": "Generate",
            "form": form,
            "opts": self.model._meta,
            "has_checkpoints": bool(form.checkpoint_names),
        }
        return TemplateResponse(request, "admin/inferences/generate.html", context)

    @staticmethod
    def _job_links(job: InferenceJob) -> dict[str, str]:
        return {
            "job": str(job.pk),
            "page_url": reverse("admin:inferences_inferencejob_change", args=[job.pk]),
            "progress_url": reverse("admin:inferences_inferencejob_progress", args=[job.pk]),
            "cancel_url": reverse("admin:inferences_inferencejob_cancel", args=[job.pk]),
        }

    def png_info_view(self, request: HttpRequest) -> JsonResponse:
        """A1111's PNG Info → "Send to txt2img": a dropped picture's infotext as the Generate form's values (POST,
        the picture as `image`), with the fields the form cannot take listed."""
        upload = request.FILES.get("image")
        if request.method != "POST" or upload is None:
            return JsonResponse({"error": "Post a PNG as `image`."}, status=400)
        if upload.size is not None and upload.size > settings.ESD_MAX_PAYLOAD_BYTES:
            return JsonResponse(
                {"error": f"This picture is {upload.size} bytes; at most {settings.ESD_MAX_PAYLOAD_BYTES} are read."},
                status=400,
            )
        text = png_parameters(upload.read())
        if text is None:
            return JsonResponse(
                {"error": "This picture carries no generation parameters (A1111 writes them in a PNG's "
                          "`parameters` text; a picture saved again by another program may have lost them)."},
                status=400,
            )  # fmt: skip
        values, unmapped = settings_from_infotext(text, GenerateForm(user=actor_of(request)))
        return JsonResponse({"values": values, "unmapped": unmapped, "infotext": text})

    def gallery_view(self, request: HttpRequest) -> HttpResponse:
        """The viewer's pictures, newest first, keyset-paged, filtered by model, sampler, endpoint, date and (for
        those who see every job) user; each links to its job."""
        actor = actor_of(request)
        everyone = selectors.sees_every_job(actor)
        choices = selectors.gallery_choices(selectors.gallery_jobs(viewer=actor, where=selectors.GalleryFilter()))
        form = GalleryForm(request.GET or None, choices=choices, everyone=everyone)
        where = form.filter() if form.is_valid() else selectors.GalleryFilter()
        jobs = selectors.gallery_jobs(viewer=actor, where=where)
        try:
            page, after = selectors.keyset_page(
                jobs, limit=self.gallery_page, start_key=request.GET.get("after") or None
            )
        except Invalid:
            page, after = selectors.keyset_page(jobs, limit=self.gallery_page, start_key=None)
        tiles = [
            (job, url, name)
            for job in page
            for url, name in list(zip(image_urls(job), job.image_names, strict=True))[: job.image_count or None]
        ]
        following = request.GET.copy()
        following["after"] = after or ""
        context = {
            **self.admin_site.each_context(request),
            "title": "Gallery",
            "opts": self.model._meta,
            "form": form,
            "tiles": tiles,
            "everyone": everyone,
            "next_query": following.urlencode() if after else "",
        }
        return TemplateResponse(request, "admin/inferences/gallery.html", context)

    def _generate_initial(self, request: HttpRequest) -> dict[str, Any]:
        """Where Generate starts: a job's settings (its page's "Edit settings", `?from=<id>`), else the person's
        last ones (kept in the session), else the form's defaults."""
        source = request.GET.get("from", "")
        job = selectors.inference_get(viewer=actor_of(request), job_id=source) if source else None
        if job is None:
            return dict(request.session.get(LAST_SETTINGS, {}))
        checkpoints = job.used_models.get("Stable-diffusion", [])
        payload = selectors.job_payload(job, settings.ESD_MAX_PAYLOAD_BYTES) or {}
        return settings_of_job(payload, job.task_type, checkpoints[0]["model_name"] if checkpoints else None)

    def _posted_job(self, request: HttpRequest, job_id: Any) -> tuple[str, InferenceJob | None]:
        """The job page's address, and the job a button there posted about (None: not a POST, or not visible)."""
        page = reverse("admin:inferences_inferencejob_change", args=[job_id])
        job = self.get_queryset(request).filter(pk=job_id).first() if request.method == "POST" else None
        return page, job

    def again_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """The job page's "Generate again" (POST): the same job once more, with its seed (the one it used, when it
        asked for a random one) or, with `seed=new`, a random one."""
        page, job = self._posted_job(request, job_id)
        if job is None:
            return redirect(page)
        payload = selectors.job_payload(job, settings.ESD_MAX_PAYLOAD_BYTES)
        if payload is None:
            self.message_user(request, "This job's payload is no longer stored; use Edit settings.", messages.ERROR)
            return redirect(page)
        if request.POST.get("seed") == "new":
            payload["seed"] = -1
        elif payload.get("seed", -1) == -1:
            used = json.loads((selectors.job_result_document(job) or {}).get("info") or "{}").get("seed")
            payload["seed"] = used if isinstance(used, int) else -1
        models = {kind: [entry["model_name"] for entry in entries] for kind, entries in job.used_models.items()}
        try:
            again = services.inference_submit(
                actor=actor_of(request), task_type=job.task_type, models=models, payload=payload
            )
        except Refused as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return redirect(page)
        self.message_user(request, f"Job {again.id} started on {again.endpoint_name}.", messages.SUCCESS)
        return redirect(reverse("admin:inferences_inferencejob_change", args=[again.pk]))

    def cancel_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """The job page's Cancel button (POST): as the list's action, for this one job."""
        page, job = self._posted_job(request, job_id)
        if job is None:
            return redirect(page)
        try:
            services.inference_cancel(actor=actor_of(request), job=job)
        except Refused as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, "Cancelled (a running job stops at its next step).", messages.SUCCESS)
        return redirect(page)

    def progress_view(self, request: HttpRequest, job_id: Any) -> JsonResponse:
        job = self.get_queryset(request).filter(pk=job_id).first()
        if job is None:
            return JsonResponse({"error": "not found"}, status=404)
        preview = bytes(job.preview) if job.preview and not job.finished else b""
        info = self._info(job) if job.finished else {}
        return JsonResponse(
            {
                "status": self.status_label(job),
                "finished": job.finished,
                "progress": job.progress,
                "step": job.progress_step,
                "total": job.progress_total,
                "error": job.error,
                "images": image_urls(job),
                "names": job.image_names,
                # pictures first, ControlNet's detected maps after them (as on the job's page)
                "pictures": len(info.get("infotexts") or job.image_names),
                "infotexts": info.get("infotexts") or [],
                "preview": f"data:image/jpeg;base64,{base64.b64encode(preview).decode()}" if preview else None,
                **self._job_links(job),
            }
        )
