"""The project's domain errors: what a service raises when one of its rules refuses a request.

They name the kind of refusal, not an HTTP status: the wire layer (esd/exceptions.py) answers each with ESD's
status code and envelope, the admin shows its message on the form or after the action, and management commands
print it. `data` carries what ESD returns beside the message on some refusals.
"""

from typing import Any


class Refused(Exception):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class Invalid(Refused):
    """The request asks for something that cannot be: a bad value, a name taken, a state that does not allow it."""


class Forbidden(Refused):
    """The actor lacks the permission string (or the ownership) the action needs."""


class NotFound(Refused):
    """The object does not exist, or the actor may not see it (the two answer alike)."""


class TooLarge(Refused):
    """The request is over a size limit of the deployment."""


class Unavailable(Refused):
    """A part of the system the action needs (the store, the broker) cannot be reached now; retrying may work."""
