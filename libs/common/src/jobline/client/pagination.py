"""Iterating over cursor-paginated lists: fetch a page, yield its items, follow
``next_cursor`` until it is null. Pages are fetched lazily, one at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
P = TypeVar("P", bound="Page")


class Page(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


def iterate(fetch: Callable[[str | None], P], items: Callable[[P], Sequence[T]]) -> Iterator[T]:
    """Every item of every page, ``fetch(cursor)`` giving each page in turn."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from items(page)
        cursor = page.next_cursor
        if not cursor:
            return


async def aiterate(
    fetch: Callable[[str | None], Awaitable[P]], items: Callable[[P], Sequence[T]]
) -> AsyncIterator[T]:
    """As :func:`iterate`, for the async client."""
    cursor: str | None = None
    while True:
        page = await fetch(cursor)
        for item in items(page):
            yield item
        cursor = page.next_cursor
        if not cursor:
            return
