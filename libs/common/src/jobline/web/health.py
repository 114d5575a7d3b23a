"""``/healthz`` (the process is alive), ``/readyz`` (its dependencies answer), ``/metrics``.

Plain Starlette routes, so a service without FastAPI (the worker) serves them too; a FastAPI
app gets them as documented API routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jobline.core.errors import DependencyUnavailable
from jobline.observe.metrics import REGISTRY, render

Check = Callable[[], Awaitable[None]]

log = logging.getLogger(__name__)

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


def add_standard_routes(
    app: Starlette, checks: Mapping[str, Check], *, terse: bool = False
) -> None:
    """Add ``/healthz``, ``/readyz`` and ``/metrics`` to ``app``; ``terse`` (production)
    reports each check as ok or unavailable only: the reasons name hosts and ports, which an
    unauthenticated probe must not learn (they are logged instead)."""

    async def healthz(_: Request) -> JSONResponse:
        """Liveness: the process answers."""
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        """Readiness: PostgreSQL and the broker answer."""
        ok, report = await run_checks(checks)
        if terse:
            for name, result in report.items():
                if result != "ok":
                    log.warning("readiness check %s failed: %s", name, result)
            report = {n: "ok" if r == "ok" else "unavailable" for n, r in report.items()}
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": report},
            status_code=200 if ok else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(render(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    documented: Any = getattr(app, "add_api_route", None)  # FastAPI: into the OpenAPI too
    for path, endpoint, summary in (
        ("/healthz", healthz, "Liveness: the process answers."),
        ("/readyz", readyz, "Readiness: PostgreSQL and the broker answer."),
    ):
        if documented is not None:
            documented(
                path,
                endpoint,
                methods=["GET"],
                summary=summary,
                operation_id=path.strip("/"),  # stable, not FastAPI's `healthz_healthz_get`
                tags=["health"],
                responses={503: {"description": "A dependency is unreachable."}}
                if path == "/readyz"
                else None,
            )
        else:
            app.add_route(path, endpoint, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
