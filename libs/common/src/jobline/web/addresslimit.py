"""A per-client-address request limit that runs before anything else: before routing,
authentication and any database connection, so a flood of unauthenticated requests costs a
dictionary lookup each, not a key lookup.

Per process (a shared store would put a round trip back in front of every request); the
health, readiness and metrics routes are exempt, so probes never see a 429.
"""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from jobline.core.tokens import TokenBuckets, retry_after_header
from jobline.web.problems import problem_response

EXEMPT: Final = frozenset({"/healthz", "/readyz", "/metrics"})


class AddressLimit:
    """429 with Retry-After once an address exceeds ``rate`` requests a second (+ ``burst``)."""

    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets[str](rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "") in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        wait = self.buckets.take(address, time.monotonic())
        if wait is None:
            await self.app(scope, receive, send)
            return
        response = problem_response(
            scope.get("path", ""),
            429,
            "Too many requests from this address.",
            kind="rate-limited",
        )
        response.headers["Retry-After"] = retry_after_header(wait)
        await response(scope, receive, send)
