"""Field types shared by the API's bodies: patterns, bounds and the checks on free-form JSON.

Requests forbid unknown fields and bound every number, so a typo or an absurd value is a
422 naming the field instead of a job that misbehaves later. Free-form JSON (payload,
metadata) is checked for what PostgreSQL's jsonb would refuse (``\\u0000``, NaN), for
integers the JSON encoder cannot write (beyond 64 bits), and for depth, so nothing valid here
can fail at INSERT time.

Pydantic only: this package is shared by the gateway and the client, and the client must
install with nothing but httpx and pydantic.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

MAX_JSON_DEPTH: Final = 32
# Integers in free-form JSON: signed 64-bit, what orjson (the storage and message encoder)
# writes and what most JSON consumers read exactly.
MIN_JSON_INT: Final = -(2**63)
MAX_JSON_INT: Final = 2**63 - 1
# Datetimes outside these years are refused: they are surely mistakes, and the far ends
# would overflow once shifted to UTC.
MIN_YEAR: Final = 1970
MAX_YEAR: Final = 9000

TYPE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,199}$"
QUEUE_PATTERN: Final = r"^[a-z0-9_-]{1,64}$"
TENANT_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Reserved by the platform: the topic `<prefix>.jobs.dlq` is the dead-letter topic.
RESERVED_QUEUE: Final = "dlq"

CURSOR_DESCRIPTION: Final = (
    "Opaque: the `next_cursor` of the previous page, passed back unchanged. It is URL-safe "
    "base64 without padding (A-Z a-z 0-9 `-` `_`, at most 512 characters) encoding the "
    "keyset position after the last item of that page; it stays valid while items come "
    "and go, and a cursor of one listing is refused (422) by another."
)
CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]{1,512}$"


def _pointer(path: list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def check_json(value: Any) -> Any:
    """Reject ``\\u0000`` in any string or key, non-finite numbers, integers beyond 64 bits
    and deep nesting."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise PydanticCustomError(
                "json_too_deep", "nested deeper than {max} levels", {"max": MAX_JSON_DEPTH}
            )
        if isinstance(item, str):
            if "\x00" in item:
                raise PydanticCustomError(
                    "nul_character", "contains \\u0000 at {at}", {"at": _pointer(path) or "/"}
                )
        elif isinstance(item, int):
            if not MIN_JSON_INT <= item <= MAX_JSON_INT:
                raise PydanticCustomError(
                    "int_range",
                    "integer beyond 64 bits at {at}",
                    {"at": _pointer(path) or "/"},
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise PydanticCustomError(
                    "non_finite", "non-finite number at {at}", {"at": _pointer(path) or "/"}
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise PydanticCustomError(
                        "nul_character",
                        "key contains \\u0000 at {at}",
                        {"at": _pointer(path) or "/"},
                    )
                stack.append((child, [*path, key]))
        elif isinstance(item, list):
            stack.extend((child, [*path, str(i)]) for i, child in enumerate(item))
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "contains \\u0000")
    return value


def _sane_datetime(value: datetime) -> datetime:
    # The year as written (before the shift to UTC), so the schema's pattern states the rule
    # exactly; within these years the shift cannot overflow.
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise PydanticCustomError(
            "datetime_range", "must be between {lo} and {hi}", {"lo": MIN_YEAR, "hi": MAX_YEAR}
        )
    return value.astimezone(UTC)


def _not_reserved_queue(value: str) -> str:
    if value == RESERVED_QUEUE:
        raise PydanticCustomError("reserved_queue", "queue name 'dlq' is reserved")
    return value


def _json_number(value: Any) -> Any:
    # Lax number parsing would take true or "5" for a number; JSON Schema's number and
    # integer do not (8.0 is an integer to both).
    if isinstance(value, bool | str):
        raise PydanticCustomError("json_number", "must be a JSON number")
    return value


JsonNumber: Final = BeforeValidator(_json_number)
"""Put on every int and float of a request: the schema's number type, exactly."""


def _json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "Input should be a JSON object")
    checked: dict[str, Any] = check_json(value)
    return checked


def _closed(schema: JsonDict) -> None:
    schema["additionalProperties"] = False  # a key outside the pattern (with \u0000) is invalid


# The schema of what check_json lets through (the depth limit aside): JSON whose strings and
# keys hold no \u0000, at any depth. Validation stays check_json's one fast pass.
NulFreeText = Annotated[str, Field(pattern="^[^\\u0000]*$")]
JsonInt = Annotated[int, Field(ge=MIN_JSON_INT, le=MAX_JSON_INT)]
JsonValue = TypeAliasType(
    "JsonValue",
    "NulFreeText | JsonInt | float | bool | list[JsonValue]"
    " | Annotated[dict[NulFreeText, JsonValue], Field(json_schema_extra=_closed)] | None",
)
JsonObject = Annotated[
    dict[str, Any],
    PlainValidator(
        _json_object,
        json_schema_input_type=Annotated[
            dict[NulFreeText, JsonValue], Field(json_schema_extra=_closed)
        ],
    ),
]
Text = Annotated[str, AfterValidator(_no_nul)]
# RFC 3339's date-time, years 1970..9000 as written: the one text form accepted (no Unix
# timestamps, no missing seconds or offset), stated in the schema as it is enforced.
RFC3339_PATTERN: Final = (
    r"^(19[7-9][0-9]|[2-8][0-9]{3}|9000)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339: Final = re.compile(RFC3339_PATTERN)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.match(value)):
        return value
    raise PydanticCustomError(
        "rfc3339", "must be an RFC 3339 date-time with a UTC offset, e.g. 2030-01-01T09:00:00Z"
    )


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_sane_datetime),
    Field(
        description=f"RFC 3339 date-time with a UTC offset (`Z` or `+hh:mm`), years "
        f"{MIN_YEAR}..{MAX_YEAR}.",
        json_schema_extra={"pattern": RFC3339_PATTERN},
    ),
]
JobType = Annotated[
    str, Field(pattern=TYPE_PATTERN, description="Handler name, e.g. `email.send`.")
]
QueueName = Annotated[
    str,
    # The schema says "not dlq" too, so a generator of valid requests never picks it.
    Field(
        pattern=QUEUE_PATTERN,
        description="1-64 of a-z, 0-9, `_`, `-`; not `dlq`.",
        json_schema_extra={"not": {"const": RESERVED_QUEUE}},
    ),
    AfterValidator(_not_reserved_queue),
]


class Answer(BaseModel):
    """A response body. Its fields are attributes (``job.status``); ``job["status"]`` gives a
    field's JSON value too, for code written against the raw JSON answer."""

    def __getitem__(self, name: str) -> Any:
        if name not in type(self).model_fields:
            raise KeyError(name)
        return self.model_dump(mode="json", include={name})[name]


class Request(BaseModel):
    """A request body: unknown fields are refused (422 naming them)."""

    model_config = ConfigDict(extra="forbid")
