"""Capping text that travels in rows and messages (error messages). Pure: no I/O.

A handler's error message is free text of any size; stored and published uncapped, one
megabyte-sized message would exceed the broker's message limit and stop the outbox behind it.
The cut is marked, so nobody mistakes a capped message for the whole.
"""

from __future__ import annotations

from typing import Final

DEFAULT_ERROR_MAX_BYTES: Final = 8 * 1024


def cap_text(text: str, max_bytes: int) -> str:
    """``text`` if its UTF-8 form fits in ``max_bytes``, else its head and a marker, within it.

    The cut never splits a character. ``max_bytes`` must leave room for the marker (64).
    """
    if max_bytes < 64:
        raise ValueError("max_bytes must be at least 64")
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    marker = f" [... cut: {len(encoded)} bytes, first {{kept}} kept]"
    # The marker's own length depends on the number it prints: size it for the widest.
    room = max_bytes - len(marker.format(kept=max_bytes).encode())
    head = encoded[:room].decode("utf-8", errors="ignore")
    return head + marker.format(kept=len(head.encode()))
