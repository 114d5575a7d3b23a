"""Splitting a large batch into requests the gateway accepts (at most 1,000 jobs each).

Each chunk is one all-or-nothing request with its own Idempotency-Key, derived from the
call's key and the chunk's position: repeating the whole call with the same key replays the
chunks already accepted and submits only the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Final, TypeVar

from jobline.api.jobs import MAX_BATCH

T = TypeVar("T")

MAX_KEY_LENGTH: Final = 255


def chunks(items: Iterable[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    """``items`` in lists of at most ``size`` (1..1000)."""
    if not 1 <= size <= MAX_BATCH:
        raise ValueError(f"chunk size must be 1..{MAX_BATCH}, got {size}")
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def chunk_key(key: str, index: int, total: int) -> str:
    """The Idempotency-Key of chunk ``index``: the call's key itself when there is one chunk."""
    if total == 1:
        return key
    derived = f"{key}:{index}"
    if len(derived) > MAX_KEY_LENGTH:
        raise ValueError(f"idempotency key too long to derive chunk keys from ({len(key)} chars)")
    return derived
