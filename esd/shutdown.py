"""Stopping a server or worker process on SIGTERM or Ctrl-C, without losing or failing a job (issue 29.4).

First signal: the workers take no new message and the jobs in hand get ESD_SHUTDOWN_GRACE seconds to finish; the
web part (esd_serve) keeps answering meanwhile, so a person can still look and cancel. Past the grace, or at a second
signal, `interrupted` is set: each running job stops at its next step and goes back to the queue (not failed; the
interrupted run does not count as an attempt), and the process exits. Downloads stop the same way and resume at the
next start.
"""

import threading
import time
from collections.abc import Callable

from django.conf import settings

# Read by the workers' step callbacks (inferences.execution) and download loops (checkpoints.execution).
interrupted = threading.Event()


def drain(
    stop: Callable[[], None], running: Callable[[], list[str]], hurry: threading.Event, say: Callable[[str], None]
) -> None:
    """Run `stop` (it returns once the workers have let go of their messages), interrupting the running jobs once
    the grace period is over or `hurry` is set (a second signal)."""
    grace = settings.ESD_SHUTDOWN_GRACE
    jobs = running()
    if jobs:
        say(
            f"Stopping: waiting up to {grace:g} s for {len(jobs)} running job(s) to finish: {'; '.join(jobs)}. "
            "Press Ctrl-C again to stop now: they go back to the queue."
        )
    else:
        say("Stopping: no job is running.")
    stopper = threading.Thread(target=stop, name="esd-stop", daemon=True)
    stopper.start()
    deadline = time.monotonic() + grace
    while stopper.is_alive():
        if not interrupted.is_set() and (hurry.is_set() or time.monotonic() >= deadline):
            left = running()
            if left:
                say(f"Stopping {len(left)} job(s) at their next step; they go back to the queue: {'; '.join(left)}")
            interrupted.set()
        stopper.join(0.1)
