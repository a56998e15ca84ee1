"""Signals that let apps take part in project-wide moments without esd knowing them."""

from django.dispatch import Signal

# Sent by esd_serve and serve_endpoint when they start: apps re-enqueue what the database says is still waiting
# (downloads not finished, jobs queued but not started), so a restart loses nothing.
recover_waiting_work = Signal()
