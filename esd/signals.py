"""Signals that let apps take part in project-wide moments without esd knowing them."""

from django.dispatch import Signal

# Sent by esd_serve and serve_endpoint when they start: apps re-enqueue what the database says is still waiting
# (downloads not finished, jobs queued but not started), so a restart loses nothing. Workers also send it every
# ESD_REQUEUE_AFTER_SECONDS with periodic=True and worker=<their Worker row>: apps queue again what a broker is
# known to have lost meanwhile. Arguments: queues (a set of queue names, or None for all), worker, periodic.
recover_waiting_work = Signal()

# Sent by the local store when it refuses a presigned PUT that cannot fit (larger than the cap, no room on the disk):
# the app whose object it was fails it with the reason at once. Arguments: key, reason.
upload_refused = Signal()

# Sent by serve_endpoint before it starts a worker: an app that knows the worker could only fail every job there
# raises ImproperlyConfigured with the reason, and the worker does not start (an fp8 engine on a GPU without float8
# tensor cores). Arguments: device.
worker_checking = Signal()

# Sent by a starting worker before it takes a message or registers (reports itself live): apps get it ready (the
# engine's warm-up). Arguments: endpoint, device.
worker_starting = Signal()

# Sent by a stopping worker once its threads have let go of their messages, before it deregisters: apps finish what
# they took on beyond a message (a job's pictures still being stored). Arguments: queues.
worker_draining = Signal()
