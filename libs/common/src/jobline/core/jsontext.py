"""JSON for the hot paths: orjson, and json for what orjson refuses or would round but JSON and
PostgreSQL keep exactly (integers beyond 64 bits)."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of ``value`` (NaN and infinities refused, as JSON has none)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def dumps_text(value: Any) -> str:
    return dumps(value).decode()


# A run of 19 or more digits may be an integer beyond 64 bits, which orjson would read as a
# float; such text (rare) is read by json, which keeps it exact.
_LONG_NUMBER: Final = re.compile(rb"[0-9]{19}")


def loads(raw: bytes | str) -> Any:
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_NUMBER.search(data):
        return json.loads(data)
    return orjson.loads(data)
