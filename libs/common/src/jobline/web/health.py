"""``/healthz`` (the process is alive) and ``/readyz`` (its dependencies answer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from jobline.core.errors import DependencyUnavailable

Check = Callable[[], Awaitable[None]]

READY_TIMEOUT_SECONDS = 3.0


async def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    """Run every check concurrently; a check fails by raising or by timing out."""

    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT_SECONDS)
        except DependencyUnavailable as exc:
            return str(exc)
        except TimeoutError:
            return f"no answer within {READY_TIMEOUT_SECONDS:g}s"
        except Exception as exc:  # a readiness probe reports, it never crashes
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    results = await asyncio.gather(*(one(c) for c in checks.values()))
    report = dict(zip(checks, results, strict=True))
    return all(r == "ok" for r in results), report


def router(checks: Mapping[str, Check]) -> APIRouter:
    routes = APIRouter(tags=["health"])

    @routes.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @routes.get(
        "/readyz",
        summary="Readiness: PostgreSQL and the broker answer.",
        responses={503: {"description": "A dependency is unreachable."}},
    )
    async def readyz() -> JSONResponse:
        """Readiness: PostgreSQL and the broker answer."""
        ok, report = await run_checks(checks)
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": report},
            status_code=200 if ok else 503,
        )

    return routes
