"""The engine's one exception: its message is shown to the person whose job failed, so it says what to change."""


class EngineError(Exception):
    pass


class Cancelled(EngineError):
    """The job was asked to stop; raised from the step callback."""

    def __init__(self) -> None:
        super().__init__("cancelled")


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (at most 300 characters), for a job's failure reason."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
