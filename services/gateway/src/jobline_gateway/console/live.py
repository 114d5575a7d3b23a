"""A page's live part over Server-Sent Events: an HTML fragment sent each time it changes.

The browser only listens (htmx's SSE extension swaps the fragment in); the server reads the
state every ``tick`` seconds and sends a frame only when the rendered fragment differs, then a
last frame ``done`` once the thing has ended. A stream ends by itself after ``max_seconds``
(the browser reconnects) and when the gateway drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse

from jobline.web import service

# What one read returns: the fragment, and the ``done`` frame's data once the thing has ended
# (None while it goes on); None instead of the pair when it is gone (purged meanwhile).
Read = Callable[[], Awaitable[tuple[str, str | None] | None]]


def sse(event: str, html: str) -> bytes:
    """One Server-Sent Events frame whose data is an HTML fragment (one data: per line)."""
    lines = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
    return f"event: {event}\n{lines}\n".encode()


def stream(read: Read, *, tick: float, max_seconds: float = 300.0) -> StreamingResponse:
    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        sent = None
        started = asyncio.get_running_loop().time()
        while not service.draining():
            state = await read()
            if state is None:
                return
            html, done = state
            if html != sent:
                yield sse("update", html)
                sent = html
            if done is not None:
                yield sse("done", done)
                return
            if asyncio.get_running_loop().time() - started > max_seconds:
                return
            await asyncio.sleep(tick)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
