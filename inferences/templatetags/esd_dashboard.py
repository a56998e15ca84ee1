"""`{% esd_dashboard %}`: the admin index's "Generate an image" entry and a small dashboard of the person's
endpoints, queue and latest images (templates/admin/index.html)."""

from typing import Any

from django import template
from django.urls import reverse

from accounts.models import User
from inferences import selectors
from inferences.api.serializers import image_urls

register = template.Library()


@register.inclusion_tag("admin/inferences/dashboard.html", takes_context=True)
def esd_dashboard(context: dict[str, Any]) -> dict[str, Any]:
    user = context["request"].user
    if not isinstance(user, User) or not user.has_perm("inferences.view_inferencejob"):
        return {"shown": False}
    board = selectors.dashboard(viewer=user)
    gallery = [
        {"job": job, "url": reverse("admin:inferences_inferencejob_change", args=[job.pk]), "image": image_urls(job)[0]}
        for job in board.recent
    ]
    return {
        "shown": True,
        "generate_url": reverse("admin:inferences_generate"),
        "gallery_url": reverse("admin:inferences_gallery"),
        "endpoints": board.endpoints,
        "queued": board.queued,
        "running": board.running,
        "gallery": gallery,
    }
