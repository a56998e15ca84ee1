"""Body validation speaks the gateway's messages (esd-behaviour.md §1.5)."""

import pytest

from esd.exceptions import EsdError
from esd.validation import schema_errors, validate_body

SCHEMA = {
    "type": "object",
    "properties": {
        "names": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 5},
            "minItems": 1,
            "maxItems": 2,
        },
        "kind": {"type": "string", "enum": ["Stable-diffusion", "Lora"]},
        "count": {"type": "integer", "minimum": 1, "maximum": 100},
        "ratio": {"type": "number"},
        "name": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]*$"},
    },
    "required": ["names", "kind"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'object has missing required properties (["names","kind"])'),
        ({"names": [""], "kind": "Lora"}, 'string "" is too short (length: 0, required minimum: 1) at /names/0'),
        (
            {"names": ["abcdef"], "kind": "Lora"},
            'string "abcdef" is too long (length: 6, maximum allowed: 5) at /names/0',
        ),
        (
            {"names": ["a"], "kind": "Foo"},
            'instance value ("Foo") not found in enum (possible values: ["Stable-diffusion","Lora"]) at /kind',
        ),
        (
            {"names": ["a"], "kind": "Lora", "count": "1"},
            'instance type (string) does not match any allowed primitive type (allowed: ["integer"]) at /count',
        ),
        (
            {"names": ["a"], "kind": "Lora", "ratio": "x"},
            'instance type (string) does not match any allowed primitive type (allowed: ["integer","number"]) at /ratio',
        ),
        (
            {"names": [], "kind": "Lora"},
            "array is too short: must have at least 1 elements but instance has 0 elements at /names",
        ),
        (
            {"names": ["a", "b", "c"], "kind": "Lora"},
            "array is too long: must have at most 2 elements but instance has 3 elements at /names",
        ),
        (
            {"names": ["a"], "kind": "Lora", "count": 0},
            "numeric instance is lower than the required minimum (minimum: 1, found: 0) at /count",
        ),
        (
            {"names": ["a"], "kind": "Lora", "count": 101},
            "numeric instance is greater than the required maximum (maximum: 100, found: 101) at /count",
        ),
        (
            {"names": ["a"], "kind": "Lora", "name": "a b"},
            'ECMA 262 regex "^[A-Za-z][A-Za-z0-9_-]*$" does not match input string "a b" at /name',
        ),
        (
            {"names": ["a"], "kind": "Lora", "extra": 1, "more": 2},
            'object instance has properties which are not allowed by the schema: ["extra","more"]',
        ),
        ([], 'instance type (array) does not match any allowed primitive type (allowed: ["object"])'),
        (
            {"names": ["a"], "kind": "Lora", "count": True},
            'instance type (boolean) does not match any allowed primitive type (allowed: ["integer"]) at /count',
        ),
    ],
)
def test_messages_are_the_gateways(body, message):
    assert message in schema_errors(SCHEMA, body)


def test_every_violation_is_reported_in_one_bracketed_list():
    with pytest.raises(EsdError) as caught:
        validate_body(SCHEMA, {"names": [""], "kind": "Foo"})
    assert caught.value.status == 400
    message = caught.value.message
    assert message.startswith("[") and message.endswith("]")
    assert "required minimum: 1" in message
    assert "not found in enum" in message


def test_a_valid_body_passes():
    validate_body(SCHEMA, {"names": ["a"], "kind": "Lora", "count": 5, "ratio": 0.5})
