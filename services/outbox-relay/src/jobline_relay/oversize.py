"""Messages too large for the broker, known before sending: found, and taken out of a row."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Final

from jobline.core import topics
from jobline.pg import outbox

# What a record adds to its key and value on the wire (record and batch headers, the event
# header): generous, so that a message we let through is not refused for a few bytes.
RECORD_OVERHEAD_BYTES: Final = 512
# A message by its row and its place in the row.
Slot = tuple[int, int]


def oversized(rows: Sequence[outbox.OutboxRow], max_bytes: int) -> dict[Slot, str]:
    """The messages larger than ``max_bytes``, by (row id, index in the row), with the reason."""
    refused = {}
    for row in rows:
        key = len(row.key.encode()) if row.key else 0
        for index, (logical, value) in enumerate(row.messages):
            size = len(value) + key + RECORD_OVERHEAD_BYTES
            if size > max_bytes:
                refused[row.id, index] = (
                    f"a message to {logical!r} is {size} bytes; the limit is {max_bytes}"
                )
    return refused


def without(row: outbox.OutboxRow, refused: Collection[Slot]) -> outbox.OutboxRow:
    """``row`` less its refused messages; a refused delayed work message makes nothing due."""
    kept = tuple(m for i, m in enumerate(row.messages) if (row.id, i) not in refused)
    if len(kept) == len(row.messages):
        return row
    work_left = any(topics.is_work(logical) for logical, _ in kept)
    return replace(row, messages=kept, due_attempt=row.due_attempt if work_left else None)
