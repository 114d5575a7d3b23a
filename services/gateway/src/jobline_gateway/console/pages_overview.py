"""``/ui``: the overview. Per queue and job type: throughput, failures, run time and queue
wait percentiles, in-flight and lag; charts of the last hour and day; open anomalies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, Response

from jobline.pg.db import Conn
from jobline_gateway.console import render
from jobline_gateway.console.access import ViewerDep
from jobline_gateway.console.queries import SQL

router = APIRouter(prefix="/ui", include_in_schema=False)

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
FINDINGS: Final = 10


def series(rows: list[Any], since: datetime, step: timedelta, now: datetime) -> dict[str, Any]:
    """A chart's columns (uPlot's layout: x in epoch seconds, then one list per series), with
    the empty buckets filled in, so a quiet minute shows as zero, not as a gap."""
    found = {row["at"]: row for row in rows}
    start = datetime.fromtimestamp(
        since.timestamp() // step.total_seconds() * step.total_seconds(), UTC
    )
    xs: list[int] = []
    ok: list[int] = []
    dead: list[int] = []
    at = start
    while at <= now:
        row = found.get(at)
        xs.append(int(at.timestamp()))
        ok.append(int(row["succeeded"]) if row else 0)
        dead.append(int(row["dead"]) if row else 0)
        at += step
    return {"x": xs, "series": {"succeeded": ok, "dead": dead}}


def _rate(count: int, window: timedelta) -> float:
    return count / (window.total_seconds() / 60)


async def _groups(conn: Conn, tenant: str, since: datetime, now: datetime) -> list[dict[str, Any]]:
    rows = await SQL.fetch(conn, "overview_groups", tenant_id=tenant, since=since)
    groups = []
    for row in rows:
        run = row["run_seconds"] or [None, None]
        wait = row["wait_seconds"] or [None, None]
        oldest = row["oldest_queued_at"]
        groups.append(
            {
                "queue": row["queue"],
                "type": row["type"],
                "per_minute": _rate(int(row["succeeded"]), now - since),
                "succeeded": int(row["succeeded"]),
                "dead": int(row["dead"]),
                "retrying": int(row["retrying"]),
                "running": int(row["running"]),
                "queued": int(row["queued"]),
                "lag": max(0.0, (now - oldest).total_seconds()) if oldest else None,
                "run_p50": run[0],
                "run_p95": run[1],
                "wait_p50": wait[0],
                "wait_p95": wait[1],
            }
        )
    return groups


@router.get("", response_class=HTMLResponse)
async def overview(request: Request, viewer: ViewerDep) -> Response:
    """The tenant at a glance (``?window=day`` for the table over the last day)."""
    now = datetime.now(UTC)
    window = DAY if request.query_params.get("window") == "day" else HOUR
    async with request.app.state.db.connection() as conn:
        groups = await _groups(conn, viewer.tenant, now - window, now)
        hour = await SQL.fetch(
            conn,
            "overview_series",
            tenant_id=viewer.tenant,
            since=now - HOUR,
            bucket=timedelta(minutes=1),
        )
        day = await SQL.fetch(
            conn, "overview_series", tenant_id=viewer.tenant, since=now - DAY, bucket=HOUR
        )
        findings = await SQL.fetch(
            conn, "findings", tenant_id=viewer.tenant, since=now - DAY, limit=FINDINGS
        )
    return await render.page(
        request,
        viewer,
        "overview.html",
        section="overview",
        groups=groups,
        window="day" if window == DAY else "hour",
        hour=series(hour, now - HOUR, timedelta(minutes=1), now),
        day=series(day, now - DAY, HOUR, now),
        findings=findings,
    )
