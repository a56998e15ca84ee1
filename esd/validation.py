"""Request bodies: JSON parsed whatever the Content-Type, checked against a JSON Schema, errors in ESD's words.

ESD validated bodies in its API gateway with a draft-4 validator whose messages (the Java json-schema-validator's)
clients compare by substring (esd-behaviour.md §1.5). jsonschema does the validating; this module only words
its errors the way the gateway did, as one bracketed, comma-separated list.
"""

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

from .exceptions import EsdError


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _allowed_types(schema_type: str | list[str]) -> list[str]:
    types = [schema_type] if isinstance(schema_type, str) else list(schema_type)
    # The gateway's validator reports "number" as admitting integers too.
    if "number" in types and "integer" not in types:
        types.append("integer")
    return sorted(types)


def _message(error: ValidationError) -> str | None:
    """One error in the gateway's words, or None for `required`/`additionalProperties` (grouped by the caller)."""
    value, expected = error.instance, error.validator_value
    match error.validator:
        case "minLength":
            return f"string {_json(value)} is too short (length: {len(value)}, required minimum: {expected})"
        case "maxLength":
            shown = value if len(value) <= 64 else value[:64] + "..."
            return f"string {_json(shown)} is too long (length: {len(value)}, maximum allowed: {expected})"
        case "enum":
            return f"instance value ({_json(value)}) not found in enum (possible values: {_json(expected)})"
        case "type":
            return (
                f"instance type ({_type_name(value)}) does not match any allowed primitive type "
                f"(allowed: {_json(_allowed_types(expected))})"
            )
        case "minItems":
            return f"array is too short: must have at least {expected} elements but instance has {len(value)} elements"
        case "maxItems":
            return f"array is too long: must have at most {expected} elements but instance has {len(value)} elements"
        case "minimum":
            return f"numeric instance is lower than the required minimum (minimum: {expected}, found: {value})"
        case "maximum":
            return f"numeric instance is greater than the required maximum (maximum: {expected}, found: {value})"
        case "pattern":
            shown = value if len(value) <= 64 else value[:64] + "..."
            return f"ECMA 262 regex {_json(expected)} does not match input string {_json(shown)}"
        case "uniqueItems":
            return "array must not contain duplicate elements"
        case "minProperties":
            return f"object has too few properties (found {len(value)} but schema requires at least {expected})"
        case "anyOf" | "oneOf":
            # Speak of the alternative that has the instance's type (e.g. a count given as a string).
            specific = [sub for sub in error.context or () if sub.validator != "type"]
            if specific:
                return _message(specific[0])
            types = [sub.validator_value for sub in error.context or () if sub.validator == "type"]
            allowed = sorted({name for value in types for name in _allowed_types(value)})
            return (
                f"instance type ({_type_name(value)}) does not match any allowed primitive type "
                f"(allowed: {_json(allowed)})"
            )
        case "required" | "additionalProperties":
            return None
    return error.message


def _with_pointer(message: str, path: tuple[Any, ...]) -> str:
    # A root-level message is left exactly as the gateway wrote it; deeper ones say where, so a person can act.
    if not path:
        return message
    return f"{message} at /{'/'.join(str(part) for part in path)}"


def schema_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every violation of `schema` by `instance`, worded as ESD's gateway worded them, in document order."""
    found: list[tuple[tuple[str, ...], str]] = []
    for error in Draft4Validator(schema).iter_errors(instance):
        path = tuple(error.absolute_path)
        sort_key = tuple(str(part) for part in path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            found.append((sort_key, _with_pointer(f"object has missing required properties ({_json(missing)})", path)))
        elif error.validator == "additionalProperties":
            allowed = set(error.schema.get("properties", {}))
            extra = sorted(name for name in error.instance if name not in allowed)
            found.append(
                (
                    sort_key,
                    _with_pointer(
                        f"object instance has properties which are not allowed by the schema: {_json(extra)}", path
                    ),
                )
            )
        else:
            message = _message(error)
            if message is not None:
                found.append((sort_key, _with_pointer(message, path)))
    # `required` lists every missing name at once, so the same message may come from several errors.
    unique = dict.fromkeys(message for _, message in sorted(found, key=lambda item: item[0]))
    return list(unique)


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with unknown top-level keys refused. Some routes accept them for ESD 1.4.0's clients, which send
    fields of their own; in token mode a misspelt key is a 400 naming it, not a silently ignored setting."""
    if schema.get("type") != "object" or "additionalProperties" in schema:
        return schema
    return {**schema, "additionalProperties": False}


def validate_body(schema: dict[str, Any], instance: Any) -> None:
    errors = schema_errors(schema, instance)
    if errors:
        raise EsdError(400, f"[{', '.join(errors)}]")


def parse_json_body(request: HttpRequest) -> Any:
    """The body as JSON, with or without a Content-Type (ESD's test suite sends none); empty means `{}`.

    Size is capped by DATA_UPLOAD_MAX_MEMORY_SIZE before anything is read into memory.
    """
    try:
        raw = request.body
    except RequestDataTooBig as exc:
        raise EsdError(413, "request body is too large") from exc
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EsdError(400, "Invalid request body: not UTF-8 text") from exc
    except RecursionError as exc:
        raise EsdError(400, "Invalid request body: JSON nested too deeply") from exc
    except ValueError as exc:
        raise EsdError(400, f"Invalid request body: not JSON ({exc})") from exc
    if has_nul(body):
        raise EsdError(400, "Invalid request body: strings may not contain NUL (\\u0000) characters")
    return body


def has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character in any key or string (PostgreSQL cannot store one)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
