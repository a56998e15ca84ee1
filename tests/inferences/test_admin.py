"""The jobs admin without a browser: the Generate page's refusals, the progress JSON, the delete action."""

import json

import pytest
from django.test import Client

from accounts import grants
from esd.storage import get_storage
from inferences import selectors
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
    grants.set_visibility(site.checkpoint, ["*"])
    answer = browser.post("/admin/inferences/inferencejob/generate/", FORM)
    assert answer.status_code == 200
    assert "no available Async endpoints for user &quot;admin&quot;" in answer.content.decode()
    assert not InferenceJob.objects.exists()
    img2img = browser.post("/admin/inferences/inferencejob/generate/", {**FORM, "task": "img2img"})
    assert "Image to image needs a starting picture." in img2img.content.decode()


def test_generate_then_progress_then_delete(site, browser, admin_user):
    grants.set_visibility(site.checkpoint, ["*"])

    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
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


def test_the_index_guides_and_the_job_page_reads_as_tables(site, browser, admin_user):
    from tests.conftest import wait_for

    grants.set_visibility(site.checkpoint, ["*"])
    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
    serve(site, "Async")
    index = browser.get("/admin/").content.decode()
    assert "Generate an image" in index and "/admin/inferences/inferencejob/generate/" in index
    assert site.endpoints["Async"].name in index and "0</strong> running" in index
    assert "Latest images" not in index  # nothing generated yet
    browser.post("/admin/inferences/inferencejob/generate/", {**FORM, "seed": "77"})
    job = InferenceJob.objects.get()
    wait_for(lambda: InferenceJob.objects.get(pk=job.pk).status == "succeed", timeout=60)
    index = browser.get("/admin/").content.decode()
    assert "Latest images" in index and f"/admin/inferences/inferencejob/{job.pk}/change/" in index
    page = browser.get(f"/admin/inferences/inferencejob/{job.pk}/change/").content.decode()
    assert '<table class="esd-table"><thead><tr><th>what</th><th>value</th>' in page  # timings
    assert "<td>sampler</td><td>Euler a</td>" in page and "<td>seeds</td><td>77</td>" in page  # parameters
    assert 'class="esd-infotext"' in page and "Seed: 77" in page  # the PNG's parameters text
    assert "s3://" not in page  # the local store shows its own paths
    assert str(get_storage().location(site.checkpoint.folder)) in page
    assert '{"' not in page.split('id="content-main"')[1].split("</form>")[0]  # no raw JSON among the fields


def test_generate_defaults_to_the_demo_model_and_small_sizes_on_cpu(site, browser, admin_user, models):
    from checkpoints import services as checkpoint_services
    from inferences.forms import DEMO_CHECKPOINT, GenerateForm

    assert site.checkpoint.names == [DEMO_CHECKPOINT]
    grants.set_visibility(site.checkpoint, ["*"])
    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
    serve(site, "Async")
    form = GenerateForm(user=admin_user)
    assert form.fields["checkpoint"].initial == DEMO_CHECKPOINT  # nothing of their own yet
    assert form.on_cpu and (form.fields["width"].initial, form.fields["steps"].initial) == (128, 10)
    assert "Your endpoint runs on a CPU" in browser.get("/admin/inferences/inferencejob/generate/").content.decode()
    mine = checkpoint_services.checkpoint_create_from_upload(
        actor=admin_user, type="Stable-diffusion", name="mine.safetensors",
        chunks=iter([models["checkpoint"].path.read_bytes()]),
    )  # fmt: skip
    grants.set_visibility(mine, ["*"])
    assert (
        GenerateForm(user=admin_user).fields["checkpoint"].initial == "mine.safetensors"
    )  # their own, once they have it
    assert (
        GenerateForm(user=site.user).fields["checkpoint"].initial == DEMO_CHECKPOINT
    )  # others still start on the demo


def test_the_job_page_cancels_and_shows_parameters_while_it_waits(site, browser):
    """Issue 29.6: a Cancel button on the job's page, "cancelling" while a worker still holds it, the job's
    parameters before it finishes (they showed "Parameters: -")."""
    serve(site, "Async", queues={"endpoint.elsewhere"})  # in service; the job waits in the queue
    waiting = site.submit(txt2img(steps=7, cfg_scale=5.5))
    assert site.start(waiting).status == 202
    page = browser.get(f"/admin/inferences/inferencejob/{waiting}/change/").content.decode()
    assert "Cancel this job" in page and "<td>steps</td><td>7</td>" in page.replace("\n", "")
    answer = browser.post(f"/admin/inferences/inferencejob/{waiting}/cancel/")
    assert answer.status_code == 302
    job = InferenceJob.objects.get(pk=waiting)
    assert job.cancelled and job.display_status == "cancelled"
    after = browser.get(answer["Location"]).content.decode()
    assert "Cancelled (a running job stops at its next step)." in after and "Cancel this job" not in after

    held = site.submit(txt2img())
    site.start(held)
    from tests.inferences.jobs import another_live_worker

    InferenceJob.objects.filter(pk=held).update(
        state="running", worker=another_live_worker(site.workers[0].record), claimed_at="2026-01-01T00:00Z"
    )
    browser.post(f"/admin/inferences/inferencejob/{held}/cancel/")
    assert browser.get(f"/admin/inferences/inferencejob/{held}/progress/").json()["status"] == "cancelling"


def test_a_refused_start_shows_as_refused(site, browser):
    serve(site, "Async", queues={"endpoint.elsewhere"})
    refused = site.submit(txt2img(width=513))
    assert site.start(refused).status == 400
    assert browser.get(f"/admin/inferences/inferencejob/{refused}/progress/").json()["status"] == "refused"


def test_generate_attaches_the_loras_and_embeddings_its_prompt_names(site, browser, admin_user, models):
    """Issue 31.2: a `<lora:...>` tag typed into Generate failed with "it has: none" though the LoRA was uploaded
    and visible (the page attached only the checkpoint; ESD clients attach what the prompt names)."""
    from checkpoints import services as checkpoint_services
    from tests.conftest import wait_for

    for key, kind in (("lora", "Lora"), ("embedding", "embeddings"), ("vae", "VAE")):
        with models[key].path.open("rb") as handle:
            checkpoint_services.checkpoint_create_from_upload(
                actor=admin_user, type=kind, name=models[key].name, chunks=iter([handle.read()])
            )
    grants.set_visibility(site.checkpoint, ["*"])
    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
    serve(site, "Async")
    form = {**FORM, "prompt": "a cat in style <lora:watercolor:0.8>", "vae": "blue-vae.safetensors"}
    assert browser.post("/admin/inferences/inferencejob/generate/", form).status_code == 302
    job = InferenceJob.objects.get()
    assert {kind: [entry["model_name"] for entry in entries] for kind, entries in job.used_models.items()} == {
        "Stable-diffusion": ["tiny-sd1.safetensors"], "Lora": ["watercolor.safetensors"],
        "embeddings": ["style.safetensors"], "VAE": ["blue-vae.safetensors"],
    }  # fmt: skip
    assert selectors.job_payload(job, 10**6)["override_settings"] == {"sd_vae": "blue-vae.safetensors"}
    done = wait_for(lambda: (j := InferenceJob.objects.get(pk=job.pk)).finished and j)
    assert done.status == "succeed", done.error


def test_a_job_can_be_generated_again_or_edited_and_generate_remembers(site, browser):
    """Issue 31.3: every job page has "Generate again" (same seed, or a new one) and "Edit settings" (Generate
    filled in from that job); Generate starts from the person's last settings."""
    from tests.conftest import wait_for

    grants.set_visibility(site.checkpoint, ["*"])
    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
    serve(site, "Async")
    form = {**FORM, "prompt": "a lighthouse at dusk", "seed": "-1", "steps": "2", "cfg_scale": "6.5"}
    assert browser.post("/admin/inferences/inferencejob/generate/", form).status_code == 302
    first = InferenceJob.objects.get()
    wait_for(lambda: InferenceJob.objects.get(pk=first.pk).finished)
    page = browser.get(f"/admin/inferences/inferencejob/{first.pk}/change/").content.decode()
    assert "Generate again" in page and f"generate/?from={first.pk}" in page

    def seed_of(job):
        done = wait_for(lambda: (j := InferenceJob.objects.get(pk=job.pk)).finished and j)
        assert done.status == "succeed", done.error
        return json.loads(selectors.job_result_document(done)["info"])["seed"]

    used = seed_of(first)
    again = browser.post(f"/admin/inferences/inferencejob/{first.pk}/again/", {"seed": "same"})
    second = InferenceJob.objects.exclude(pk=first.pk).get()
    assert again["Location"].endswith(f"/{second.pk}/change/") and seed_of(second) == used  # the seed it used
    browser.post(f"/admin/inferences/inferencejob/{first.pk}/again/", {"seed": "new"})
    third = InferenceJob.objects.exclude(pk__in=[first.pk, second.pk]).get()
    assert selectors.job_payload(third, 10**6)["seed"] == -1 and seed_of(third) >= 0

    edit = browser.get(f"/admin/inferences/inferencejob/generate/?from={first.pk}").content.decode()
    assert "a lighthouse at dusk</textarea>" in edit and 'name="cfg_scale" value="6.5"' in edit
    assert 'name="steps" value="2"' in edit
    remembered = browser.get("/admin/inferences/inferencejob/generate/").content.decode()
    assert "a lighthouse at dusk</textarea>" in remembered  # the last settings come back


def test_the_studio_posts_for_json_and_gets_errors_by_field(site, browser):
    """Issue 31.7: the studio's script posts for JSON: 201 with the job's links, or 400 with each field's errors
    (the page shows them beside their fields); without the header the post still redirects (no script)."""
    grants.set_visibility(site.checkpoint, ["*"])
    grants.set_visibility(site.endpoints["Async"], ["IT Operator"])
    url = "/admin/inferences/inferencejob/generate/"
    bad = browser.post(url, {**FORM, "steps": "0", "task": "img2img"}, headers={"Accept": "application/json"})
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    assert set(errors) == {"steps", "init_image"} and "starting picture" in errors["init_image"][0]["message"]
    assert not InferenceJob.objects.exists()
    serve(site, "Async")
    started = browser.post(url, FORM, headers={"Accept": "application/json"})
    assert started.status_code == 201
    job = InferenceJob.objects.get()
    assert started.json()["job"] == str(job.pk)
    assert started.json()["progress_url"] == f"/admin/inferences/inferencejob/{job.pk}/progress/"
    assert browser.post(url, FORM).status_code == 302


def test_the_progress_json_carries_the_live_preview_until_the_job_ends(site, browser):
    """Issue 31.1: the row's preview (the worker writes it while the job runs) reaches the page as a data URL."""
    job_id = InferenceJob.objects.create(task_type="txt2img", inference_type="Async", created_by=site.user).pk
    InferenceJob.objects.filter(pk=job_id).update(state="running", preview=b"\xff\xd8jpeg")
    progress = browser.get(f"/admin/inferences/inferencejob/{job_id}/progress/").json()
    assert progress["preview"] == "data:image/jpeg;base64,/9hqcGVn" and not progress["finished"]
    InferenceJob.objects.filter(pk=job_id).update(state="cancelled")
    assert browser.get(f"/admin/inferences/inferencejob/{job_id}/progress/").json()["preview"] is None


def test_png_info_answers_a_picture_without_parameters_with_a_reason(site, browser):
    url = "/admin/inferences/inferencejob/generate/png-info/"
    assert browser.post(url).status_code == 400
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    buffer.name = "plain.png"
    answer = browser.post(url, {"image": buffer})
    assert answer.status_code == 400 and "no generation parameters" in answer.json()["error"]
    not_a_picture = io.BytesIO(b"not a picture")
    not_a_picture.name = "x.png"
    assert browser.post(url, {"image": not_a_picture}).status_code == 400
    from django.test import override_settings

    with override_settings(ESD_MAX_PAYLOAD_BYTES=10):
        buffer.seek(0)
        too_large = browser.post(url, {"image": buffer})
    assert too_large.status_code == 400 and "at most 10 are read" in too_large.json()["error"]


def test_the_gallery_shows_only_visible_pictures_and_filters_by_user_for_admins(site, browser, make_user):
    """Issue 31.6: a person sees their own pictures; an admin sees everyone's and may filter by user."""
    from tests.conftest import wait_for

    serve(site, "Async")
    mine = site.submit(txt2img(prompt="the artist's fox"))
    assert site.start(mine).status == 202
    wait_for(lambda: InferenceJob.objects.get(pk=mine).finished)
    artist = Client()
    artist.force_login(site.user)
    site.user.is_staff = True
    site.user.save()
    everyone = browser.get("/admin/inferences/inferencejob/gallery/").content.decode()
    assert "the artist&#x27;s fox" in everyone and 'name="user"' in everyone
    only = browser.get("/admin/inferences/inferencejob/gallery/", {"user": "nobody"}).content.decode()
    assert "the artist&#x27;s fox" not in only and "No pictures match these filters" in only
    other = make_user("dave", ["inference:create", "inference:list"], is_staff=True)
    client = Client()
    client.force_login(other)
    theirs = client.get("/admin/inferences/inferencejob/gallery/").content.decode()
    assert "fox" not in theirs and 'name="user"' not in theirs
    # a key this server did not write is ignored (the first page), not a 500
    assert client.get("/admin/inferences/inferencejob/gallery/", {"after": "garbage"}).status_code == 200
