"""Payload validation against a job type's JSON Schema, with a JSON pointer per violation.

Backed by ``jsonschema`` (the reference implementation; the dialect is the schema's
``$schema``, else 2020-12, which pydantic writes). Pure: a schema is compiled once per
distinct schema and validation touches no I/O. References are resolved inside the schema
only (``#/$defs/...``, which is all pydantic writes); nothing is ever fetched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

# jsonschema ships no type information (as tests/deploy's imports note too).
import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError, ValidationError  # type: ignore[import-untyped]
from jsonschema.protocols import Validator  # type: ignore[import-untyped]
from referencing.exceptions import Unresolvable

from jobline.core.errors import JoblineError

MAX_VIOLATIONS: Final = 10
"""Violations reported per payload: enough to fix a request, bounded for a huge bad one."""


class InvalidSchema(JoblineError):
    """The payload schema is not a valid JSON Schema."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason a payload is invalid: where (RFC 6901 pointer into the payload) and why."""

    pointer: str
    message: str


def pointer(path: Sequence[str | int]) -> str:
    """The RFC 6901 JSON pointer of ``path`` ("" is the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class PayloadSchema:
    """A compiled payload schema; build once per distinct schema, validate many payloads."""

    __slots__ = ("_validator", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        """Check and compile ``schema``; raise :class:`InvalidSchema` if it is not one."""
        self.schema = schema
        self._validator = _compile(_canonical(schema))

    def violations(self, payload: Any) -> list[Violation]:
        """Why ``payload`` does not satisfy the schema (empty when it does), ordered by
        pointer, at most :data:`MAX_VIOLATIONS`."""
        try:
            if self._validator.is_valid(payload):  # the common case: one pass, no errors built
                return []
            found = sorted(map(_violation, self._validator.iter_errors(payload)), key=_where)
        except Unresolvable as exc:  # a $ref to something outside the schema: never fetched
            raise InvalidSchema(f"the payload schema has an unresolvable $ref: {exc}") from None
        return found[:MAX_VIOLATIONS]


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidSchema` unless ``schema`` is a valid JSON Schema of its dialect."""
    PayloadSchema(schema)


def _where(violation: Violation) -> str:
    return violation.pointer


def _violation(error: ValidationError) -> Violation:
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # Point at the missing member itself, not at the object that lacks it.
        missing = [
            name
            for name in error.validator_value
            if name not in error.instance and repr(name) in error.message
        ]
        path += missing[:1]
    return Violation(pointer(path), error.message)


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


@lru_cache(maxsize=1024)
def _compile(canonical: str) -> Validator:
    # Keyed by the schema's canonical text: the registry reloads records, not schemas, so
    # each distinct schema is checked and compiled once per process.
    schema = json.loads(canonical)
    if not isinstance(schema, dict):
        raise InvalidSchema("a payload schema must be a JSON object")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise InvalidSchema(f"invalid payload schema: {exc.message}") from None
    validator: Validator = cls(schema)
    return validator
