"""Steps the browser tests share: logging in, and the Generate studio."""


def log_in(page, base: str, username: str = "admin", password: str = "admin-pw-1") -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")


def fill_generate(page, base: str, prompt: str, size: str, steps: str) -> None:
    """Open the Generate page and fill in the generation with the tiny checkpoint."""
    page.goto(f"{base}/admin/inferences/inferencejob/generate/")
    page.select_option("#id_checkpoint", "tiny-sd1.safetensors")
    page.fill("#id_prompt", prompt)
    page.select_option("#id_width", size)
    page.select_option("#id_height", size)
    page.fill("#id_steps", steps)


def submit_generate(page, *, wait: bool = True) -> None:
    """Generate: the studio stays on the page and shows the job on its right; `wait`: until it has finished."""
    page.click("#generate-submit")
    page.wait_for_selector("#esd-output[data-state=finished]" if wait else "#esd-output[data-state=running]",
                           timeout=60_000)  # fmt: skip


def deploy(actor, workers: list, uploads: list, suffix: str) -> None:
    """Upload `uploads` ((type, path) pairs) as `actor`, create an Async CPU endpoint for the IT Operator role and
    start a worker serving it (stopped by the `site` fixture), then wait until it is live."""
    from checkpoints import services as checkpoint_services
    from endpoints import services as endpoint_services
    from endpoints.models import Endpoint
    from endpoints.runtime import EndpointWorker
    from tests.conftest import wait_for

    for kind, path in uploads:
        checkpoint_services.checkpoint_create_from_upload(
            actor=actor, type=kind, name=path.name, chunks=iter([path.read_bytes()])
        )
    endpoint = endpoint_services.endpoint_create(
        actor=actor, suffix=suffix, endpoint_type="Async", instance_type="cpu", count=1, autoscaling=False,
        roles=["IT Operator"],
    )  # fmt: skip
    worker = EndpointWorker(endpoint, device="cpu")
    worker.start()
    workers.append(worker)
    wait_for(lambda: Endpoint.objects.get(pk=endpoint.pk).workers.count() > 0, timeout=15)
