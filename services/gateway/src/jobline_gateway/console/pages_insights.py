"""``/ui/insights``: the analyzer's anomalies with the minute series around each (a chart),
and its retry recommendations with their evidence and an apply button (``policies:write``).

The analyzer writes both tables; the console reads them from the same database (the
analyzer's REST API needs no second login). Apply writes the job type's policy as the
analyzer's own apply does, through :func:`jobline.pg.policystore.set_policy`, audited.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.core.apikeys import Scope
from jobline.pg import audit, policystore
from jobline.web.problems import ProblemError
from jobline_gateway.console import render
from jobline_gateway.console.access import ChangerDep, ViewerDep
from jobline_gateway.console.queries import SQL
from jobline_gateway.deps import actor

router = APIRouter(prefix="/ui/insights", include_in_schema=False)

LOOKBACK: Final = timedelta(days=7)
FINDINGS: Final = 20
CHARTED: Final = 5  # findings that get a chart (one range scan of the rollups each)
AROUND: Final = timedelta(minutes=30)


def _chart(rows: list[Any]) -> dict[str, Any]:
    return {
        "x": [int(r["bucket"].timestamp()) for r in rows],
        "series": {
            "succeeded": [r["succeeded"] for r in rows],
            "retried": [r["retried"] for r in rows],
            "dead": [r["dead"] for r in rows],
        },
    }


@router.get("", response_class=HTMLResponse)
async def insights(request: Request, viewer: ViewerDep) -> Response:
    """Anomalies (newest first, the first few charted) and recommendations."""
    now = datetime.now(UTC)
    async with request.app.state.db.connection() as conn:
        findings = await SQL.fetch(
            conn, "findings", tenant_id=viewer.tenant, since=now - LOOKBACK, limit=FINDINGS
        )
        charts: dict[UUID, dict[str, Any]] = {}
        for finding in findings[:CHARTED]:
            rows = await SQL.fetch(
                conn,
                "rollup_series",
                tenant_id=viewer.tenant,
                job_type=finding["job_type"],
                since=finding["window_start"] - AROUND,
                until=finding["window_end"] + AROUND,
            )
            charts[finding["id"]] = _chart(rows)
        recommendations = await SQL.fetch(conn, "recommendations", tenant_id=viewer.tenant)
    return await render.page(
        request,
        viewer,
        "insights.html",
        section="insights",
        findings=findings,
        charts=charts,
        recommendations=recommendations,
        may_apply=viewer.may(Scope.POLICIES_WRITE),
        notice=request.query_params.get("notice"),
    )


@router.post("/recommendations/{recommendation_id}/apply")
async def apply(recommendation_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Write the recommended policy as the job type's default (``policies:write``)."""
    viewer.require(Scope.POLICIES_WRITE)
    async with request.app.state.db.transaction() as conn:
        found = await SQL.fetchrow(
            conn, "lock_recommendation", id=recommendation_id, tenant_id=viewer.tenant
        )
        if found is None:
            raise ProblemError(404, f"No recommendation {recommendation_id}.")
        policy = found["policy"]
        await policystore.set_policy(
            conn,
            viewer.tenant,
            found["job_type"],
            max_attempts=policy["max_attempts"],
            backoff=policy["backoff"],
            non_retryable_errors=policy["non_retryable_errors"],
            source="analyzer",
        )
        await SQL.fetchval(conn, "mark_applied", id=recommendation_id)
        await audit.record(
            conn,
            actor(request, viewer.principal),
            "policy.apply",
            f"{viewer.tenant}/{found['job_type']}",
            {"recommendation": str(recommendation_id), "policy": policy},
        )
    return RedirectResponse("/ui/insights?notice=applied", status_code=303)
