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
