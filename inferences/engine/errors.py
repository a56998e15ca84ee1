"""The engine's one exception: its message is shown to the person whose job failed, so it says what to change."""


class EngineError(Exception):
    pass


class Cancelled(EngineError):
    """The job was asked to stop; raised from the step callback."""

    def __init__(self) -> None:
        super().__init__("cancelled")
