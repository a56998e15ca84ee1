"""The checkpoint admin: upload a file, see status and progress, delete with the files."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from checkpoints.models import Checkpoint
from tests.helpers import safetensors_bytes


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_upload_a_file_in_the_admin(admin_client, store):
    upload = SimpleUploadedFile("tiny.safetensors", safetensors_bytes(), content_type="application/octet-stream")
    response = admin_client.post("/admin/checkpoints/checkpoint/add/", {"type": "Lora", "file": upload}, follow=True)
    assert response.status_code == 200
    checkpoint = Checkpoint.objects.get()
    assert (checkpoint.status, checkpoint.type, checkpoint.names) == ("Active", "Lora", ["tiny.safetensors"])
    assert checkpoint.created_by.username == "admin"
    page = admin_client.get("/admin/checkpoints/checkpoint/").content.decode()
    assert "tiny.safetensors" in page
    detail = admin_client.get(f"/admin/checkpoints/checkpoint/{checkpoint.pk}/change/").content.decode()
    where = store.location(checkpoint.folder)
    assert where in detail
    # The local store shows its own path; S3 its URI. ESD's s3:// form stays on the wire only.
    assert ("s3://" in where) == (store.__class__.__name__ == "S3Storage")


def test_a_refused_upload_shows_the_reason_on_the_form(admin_client, store):
    upload = SimpleUploadedFile("model.ckpt", b"\x80\x04", content_type="application/octet-stream")
    response = admin_client.post("/admin/checkpoints/checkpoint/add/", {"type": "Lora", "file": upload})
    assert response.status_code == 200
    assert "pickle format" in response.content.decode()
    assert not Checkpoint.objects.exists()


def test_the_add_form_needs_a_file_or_a_url(admin_client, store):
    response = admin_client.post("/admin/checkpoints/checkpoint/add/", {"type": "Lora"})
    assert "Give either a file or a URL." in response.content.decode()


def test_failed_downloads_show_their_reason_in_the_list(admin_client, admin_user, store):
    Checkpoint.objects.create(type="Lora", status="Failed", error="the server answered HTTP 404", created_by=admin_user)
    assert "HTTP 404" in admin_client.get("/admin/checkpoints/checkpoint/").content.decode()


def test_delete_action_removes_files(admin_client, store):
    upload = SimpleUploadedFile("gone.safetensors", safetensors_bytes())
    admin_client.post("/admin/checkpoints/checkpoint/add/", {"type": "Lora", "file": upload})
    checkpoint = Checkpoint.objects.get()
    admin_client.post(
        "/admin/checkpoints/checkpoint/", {"action": "delete_checkpoints", "_selected_action": [checkpoint.pk]}
    )
    assert not Checkpoint.objects.exists()
    assert store.list_keys("Lora/") == []


def test_disable_action(admin_client, store):
    upload = SimpleUploadedFile("toggle.safetensors", safetensors_bytes())
    admin_client.post("/admin/checkpoints/checkpoint/add/", {"type": "Lora", "file": upload})
    checkpoint = Checkpoint.objects.get()
    admin_client.post("/admin/checkpoints/checkpoint/", {"action": "disable", "_selected_action": [checkpoint.pk]})
    checkpoint.refresh_from_db()
    assert checkpoint.status == "Disabled"


def test_import_a_url_in_the_admin(admin_client, store, allow_loopback, file_server):
    file_server.serve_bytes("/m.safetensors", safetensors_bytes())
    response = admin_client.post(
        "/admin/checkpoints/checkpoint/add/", {"type": "Lora", "url": file_server.url("/m.safetensors")}, follow=True
    )
    assert "Download started" in response.content.decode()
    checkpoint = Checkpoint.objects.get()
    assert (checkpoint.status, checkpoint.names) == ("Downloading", ["m.safetensors"])
