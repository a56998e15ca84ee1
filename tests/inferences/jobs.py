"""A small deployment for job tests: a user with a role, the tiny checkpoint Active, endpoints with live workers."""

import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from accounts import grants
from checkpoints import services as checkpoint_services
from checkpoints.models import Checkpoint
from endpoints import services as endpoint_services
from endpoints.models import Endpoint
from endpoints.runtime import EndpointWorker
from tests.esd.test_storage import http

ARTIST = ["inference:create", "inference:list", "checkpoint:list", "sagemaker_endpoint:list"]


@dataclass
class Deployment:
    esd: Any
    user: Any
    token: str
    checkpoint: Checkpoint
    endpoints: dict[str, Endpoint]
    workers: list[EndpointWorker] = field(default_factory=list)

    def create(self, task: str = "txt2img", kind: str = "Async", token: str | None = None, **models: Any) -> Any:
        body = {
            "task_type": task,
            "inference_type": kind,
            "models": models or {"Stable-diffusion": [self.checkpoint.names[0]], "VAE": ["Automatic"]},
            "filters": {"createAt": time.time(), "creator": "sd-webui"},
        }
        return self.esd.call("POST", "inferences", body, token=token or self.token)

    def submit(self, payload: Any, task: str = "txt2img", kind: str = "Async", **models: Any) -> str:
        created = self.create(task, kind, **models)
        assert created.status == 201, created.body
        inference = created.body["data"]["inference"]
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, _, _ = http("PUT", inference["api_params_s3_upload_url"], raw)
        assert status == 200
        return inference["id"]

    def start(self, job_id: str, token: str | None = None) -> Any:
        return self.esd.call("PUT", f"inferences/{job_id}/start", token=token or self.token)

    def get(self, job_id: str, token: str | None = None) -> Any:
        return self.esd.call("GET", f"inferences/{job_id}", token=token or self.token)

    def wait(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.get(job_id).body["data"]
            if data["status"] in ("succeed", "failed"):
                return data
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def images_of(data: dict[str, Any]) -> list[Image.Image]:
    found = []
    for url in data["img_presigned_urls"]:
        status, _, body = http("GET", url)
        assert status == 200
        found.append(Image.open(io.BytesIO(body)))
    return found


def result_document(data: dict[str, Any]) -> dict[str, Any]:
    [url] = data["output_presigned_urls"]
    status, _, body = http("GET", url)
    assert status == 200
    return json.loads(body)


def deploy(esd: Any, admin: Any, make_role: Any, make_user: Any, token_for: Any, checkpoint_path: Any) -> Deployment:
    # ESD lets a role hold one endpoint: the Real-time one belongs to a second role of alice's
    make_role("realtime", ["inference:create"])
    user = make_user("alice", ARTIST, roles=["realtime"])
    with checkpoint_path.open("rb") as handle:
        checkpoint = checkpoint_services.checkpoint_create_from_upload(
            actor=admin, type="Stable-diffusion", name="tiny-sd1.safetensors", chunks=iter([handle.read()])
        )
    grants.set_visibility(checkpoint, ["role-alice"])
    checkpoint.refresh_from_db()
    endpoints = {
        kind: endpoint_services.endpoint_create(
            actor=admin,
            suffix=kind.lower().replace("-", ""),
            endpoint_type=kind,
            instance_type="cpu",
            count=1,
            autoscaling=False,
            roles=["role-alice" if kind == "Async" else "realtime"],
        )
        for kind in ("Async", "Real-time")
    }
    return Deployment(esd=esd, user=user, token=token_for(user), checkpoint=checkpoint, endpoints=endpoints)


def serve(deployment: Deployment, kind: str = "Async", queues: set[str] | None = None) -> EndpointWorker:
    worker = EndpointWorker(Endpoint.objects.get(pk=deployment.endpoints[kind].pk), device="cpu", queues=queues)
    worker.start()
    deployment.workers.append(worker)
    return worker


def another_live_worker(worker: Any) -> Any:
    """A second live worker row on the same endpoint (another process, as far as claims can tell)."""
    from django.utils import timezone

    from endpoints.models import Worker

    return Worker.objects.create(
        endpoint=worker.endpoint, hostname="elsewhere", pid=2, device="cpu", last_heartbeat=timezone.now()
    )
