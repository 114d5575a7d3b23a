"""Page cursors: the opaque ``next_cursor`` tokens of the gateway's listings, and the one 422
for a token it did not hand out.

A token is the unpadded URL-safe base64 of a small JSON object: ``{"c": created_at, "i": id}``
for the jobs listing (its keyset position, :class:`Cursor`; the workflows listing adds
``"l": "workflows"``, so neither accepts the other's), ``{"k": value}`` for the schedule
listings (the last name, or the last fire time).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar
from uuid import UUID

from jobline.web.problems import FieldError, ProblemError

T = TypeVar("T")

# What decoding a token that is not one of ours may raise.
_MALFORMED: Final = (
    AttributeError,
    binascii.Error,
    UnicodeDecodeError,
    KeyError,
    TypeError,
    ValueError,
)


def _encode(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _decode(token: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in a listing ordered by (created_at DESC, id DESC): the last row of the
    previous page. ``listing`` names the listing when it is not the jobs'."""

    created_at: datetime
    id: UUID

    def encode(self, listing: str = "") -> str:
        data = {"c": self.created_at.isoformat(), "i": str(self.id)}
        return _encode(data | {"l": listing} if listing else data)

    @classmethod
    def decode(cls, token: str, listing: str = "") -> Cursor:
        """Raises ValueError for anything this gateway did not hand out for ``listing``."""
        try:
            data = _decode(token)
            if data.get("l", "") != listing:
                raise ValueError("another listing's cursor")
            created = datetime.fromisoformat(data["c"])
            if created.tzinfo is None:
                raise ValueError("naive")
            return cls(created, UUID(data["i"]))
        except _MALFORMED as exc:
            raise ValueError("invalid cursor") from exc


def encode_key(value: str) -> str:
    """The token of a listing ordered by one value (a name, a fire time)."""
    return _encode({"k": value})


def decode_key(token: str, parse: Callable[[str], T]) -> T:
    """The value of an :func:`encode_key` token, parsed; :func:`invalid_cursor` otherwise."""
    try:
        value = _decode(token)["k"]
        if not isinstance(value, str) or "\x00" in value:
            raise TypeError("not a cursor of ours")
        return parse(value)
    except _MALFORMED:
        raise invalid_cursor() from None


def invalid_cursor() -> ProblemError:
    """The 422 for a cursor this gateway did not hand out."""
    return ProblemError(
        422,
        "The cursor is invalid.",
        kind="validation",
        errors=[FieldError(field="cursor", location="query", message="invalid cursor")],
    )
