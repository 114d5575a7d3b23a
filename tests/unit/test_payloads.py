"""Payload validation against a type's JSON Schema: every violation with a JSON pointer."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from jobline.core.payloads import MAX_VIOLATIONS, InvalidSchema, PayloadSchema, pointer

SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string"},
        "n": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "a/b~c": {"type": "boolean"},
    },
    "required": ["to"],
}


def test_a_valid_payload_has_no_violations():
    assert PayloadSchema(SCHEMA).violations({"to": "a@example.com", "n": 3}) == []


def test_each_violation_points_at_its_value():
    found = PayloadSchema(SCHEMA).violations({"to": "x", "n": -1, "tags": ["a", 2], "a/b~c": "yes"})
    assert [(v.pointer, v.message) for v in found] == [
        ("/a~1b~0c", "'yes' is not of type 'boolean'"),
        ("/n", "-1 is less than the minimum of 0"),
        ("/tags/1", "2 is not of type 'string'"),
    ]


def test_a_missing_member_is_pointed_at_itself():
    (violation,) = PayloadSchema(SCHEMA).violations({"n": 1})
    assert violation.pointer == "/to"
    assert "'to' is a required property" in violation.message


def test_violations_are_capped():
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    payload = {f"k{i:03}": i for i in range(50)}
    assert len(PayloadSchema(schema).violations(payload)) == MAX_VIOLATIONS


@pytest.mark.parametrize("schema", [{"type": "nope"}, {"minimum": "zero"}, {"required": "to"}])
def test_an_invalid_schema_is_refused(schema):
    with pytest.raises(InvalidSchema, match="invalid payload schema"):
        PayloadSchema(schema)


def test_a_pydantic_models_schema_checks_what_the_model_would_refuse():
    class Address(BaseModel):
        city: str

    class Order(BaseModel):
        qty: int = Field(ge=1)
        ship_to: Address

    schema = PayloadSchema(Order.model_json_schema(mode="validation"))  # has $defs and $ref
    assert schema.violations({"qty": 2, "ship_to": {"city": "Oslo"}}) == []
    found = schema.violations({"qty": 0, "ship_to": {}})
    assert [v.pointer for v in found] == ["/qty", "/ship_to/city"]


def test_pointer_escapes_per_rfc_6901():
    assert pointer([]) == ""
    assert pointer(["a/b", "m~n", 3]) == "/a~1b/m~0n/3"
