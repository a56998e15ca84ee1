"""The jobs admin without a browser: the Generate page's refusals, the progress JSON, the delete action."""

import pytest
from django.test import Client

from esd.storage import get_storage
from inferences.models import InferenceJob

from .conftest import txt2img
from .jobs import deploy, serve


@pytest.fixture
def site(transactional_db, live_server, esd, admin_user, make_role, make_user, token_for, models, settings):
    settings.ESD_PUBLIC_URL = live_server.url
    settings.ESD_WORKER_HEARTBEAT_SECONDS = 0.2
    deployment = deploy(esd, admin_user, make_role, make_user, token_for, models["checkpoint"].path)
    yield deployment
    for worker in deployment.workers:
        worker.stop()


@pytest.fixture
def browser(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


FORM = {
    "task": "txt2img", "checkpoint": "tiny-sd1.safetensors", "prompt": "a cat", "width": "64", "height": "64",
    "steps": "3", "sampler": "Euler a", "cfg_scale": "7", "seed": "5", "batch_size": "1", "denoising_strength": "0.75",
}  # fmt: skip


def test_generate_without_an_endpoint_shows_the_reason(site, browser):
    from checkpoints.models import Checkpoint

    Checkpoint.objects.filter(pk=site.checkpoint.pk).update(allowed_roles_or_users=["*"])
    answer = browser.post("/admin/inferences/inferencejob/generate/", FORM)
    assert answer.status_code == 200
    assert "no available Async endpoints for user &quot;admin&quot;" in answer.content.decode()
    assert not InferenceJob.objects.exists()
    img2img = browser.post("/admin/inferences/inferencejob/generate/", {**FORM, "task": "img2img"})
    assert "Image to image needs a starting picture." in img2img.content.decode()


def test_generate_then_progress_then_delete(site, browser, admin_user):
    from checkpoints.models import Checkpoint

    Checkpoint.objects.filter(pk=site.checkpoint.pk).update(allowed_roles_or_users=["*"])
    from endpoints.models import Endpoint

    Endpoint.objects.filter(pk=site.endpoints["Async"].pk).update(owner_group_or_role=["IT Operator"])
    serve(site, "Async")
    answer = browser.post("/admin/inferences/inferencejob/generate/", FORM)
    assert answer.status_code == 302
    job = InferenceJob.objects.get()
    assert answer["Location"].endswith(f"/admin/inferences/inferencejob/{job.pk}/change/")
    from tests.conftest import wait_for

    progress = wait_for(
        lambda: (data := browser.get(f"/admin/inferences/inferencejob/{job.pk}/progress/").json())["finished"] and data
    )
    assert progress["status"] == "succeed" and progress["progress"] == 1.0 and len(progress["images"]) == 1
    page = browser.get(f"/admin/inferences/inferencejob/{job.pk}/change/").content.decode()
    assert 'class="esd-image"' in page and "a cat" in page
    listing = browser.get("/admin/inferences/inferencejob/").content.decode()
    assert "<img src=" in listing and "Generate" in listing
    job.refresh_from_db()
    assert get_storage().list_keys(job.result_folder)
    deleted = browser.post(
        "/admin/inferences/inferencejob/", {"action": "delete_jobs", "_selected_action": [str(job.pk)]}, follow=True
    )
    assert "1 job(s) deleted." in deleted.content.decode()
    assert get_storage().list_keys(job.result_folder) == []


def test_another_users_job_is_not_in_their_admin(site, make_user):
    serve(site, "Async")
    job_id = site.submit(txt2img())
    staff = make_user("carol", ["inference:create", "inference:list"], is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get(f"/admin/inferences/inferencejob/{job_id}/progress/").status_code == 404
    assert job_id[:8] not in client.get("/admin/inferences/inferencejob/").content.decode()
