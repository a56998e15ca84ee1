"""Typed access to a payload's keys, with messages that name the key and the accepted range (no torch)."""

from __future__ import annotations

from typing import Any

from ..errors import EngineError


class Reader:
    """Typed access to payload keys with messages that name the key and the accepted range."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix  # how messages name the object's keys: "alwayson_scripts.controlnet.args[0]."

    def value(self, key: str, default: Any) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def integer(self, key: str, default: int, low: int, high: int, hint: str = "") -> int:
        value = self.value(key, default)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise EngineError(f"{self.prefix}{key} must be an integer from {low} to {high}{hint}, not {value!r}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.value(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise EngineError(f"{self.prefix}{key} must be a number from {low:g} to {high:g}, not {value!r}")
        return float(value)

    def text(self, key: str, default: str, limit: int) -> str:
        value = self.value(key, default)
        if not isinstance(value, str):
            raise EngineError(f"{self.prefix}{key} must be a string, not {type(value).__name__}")
        if len(value) > limit:
            raise EngineError(f"{self.prefix}{key} is {len(value)} characters long; at most {limit} are accepted")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool | int):
            raise EngineError(f"{self.prefix}{key} must be true or false, not {value!r}")
        return bool(value)
