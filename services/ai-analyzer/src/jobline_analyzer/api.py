"""`/v1/insights`: anomalies and retry recommendations for the caller's tenant."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from jobline.pg import engine as db
from jobline.web.problems import ProblemError
from jobline_analyzer.advice import advise
from jobline_analyzer.deps import AppSettings, Engine, PolicyWriter, Reader, actor
from jobline_analyzer.findings import KINDS, Kind
from jobline_analyzer.store import findings as finding_store
from jobline_analyzer.store import recommendations as advice_store

router = APIRouter(prefix="/v1/insights", tags=["insights"])


def encode_cursor(created_at: datetime, finding_id: UUID) -> str:
    """Opaque keyset cursor of the last item of a page."""
    raw = f"{created_at.isoformat()}|{finding_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Inverse of :func:`encode_cursor`; a malformed cursor is a 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, fid = raw.partition("|")
        return datetime.fromisoformat(at), UUID(fid)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ProblemError(400, "the cursor is malformed; pass next_cursor unchanged") from None


@router.get("/anomalies", summary="List the tenant's anomalies, newest first.")
async def list_anomalies(
    *,
    key: Reader,
    engine: Engine,
    type: Annotated[str | None, Query(description="job type")] = None,
    kind: Annotated[Kind | None, Query(description=f"one of {', '.join(KINDS)}")] = None,
    since: Annotated[datetime | None, Query(description="window ends at or after")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """List the tenant's anomalies, newest first."""
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    before = decode_cursor(cursor) if cursor else None
    async with db.transaction(engine) as conn:
        page = await finding_store.list_findings(
            conn,
            key.tenant_id,
            job_type=type,
            kind=kind,
            since=since,
            before=before,
            limit=limit + 1,
        )
    more = len(page) > limit
    page = page[:limit]
    last = page[-1] if page else None
    return {
        "items": [s.to_dict() for s in page],
        "next_cursor": encode_cursor(last.created_at, last.id) if more and last else None,
    }


@router.get("/recommendations", summary="Retry recommendations per job type.")
async def list_recommendations(
    *,
    key: Reader,
    engine: Engine,
    settings: AppSettings,
    type: Annotated[str | None, Query(description="job type")] = None,
) -> dict[str, Any]:
    """Retry recommendations per job type: attempt success, recovery time, policy, DLQ triage."""
    now = datetime.now(UTC)
    since = now - timedelta(days=settings.analyzer_history_days)
    items = []
    async with db.transaction(engine) as conn:
        types = (
            [type] if type is not None else await advice_store.job_types(conn, key.tenant_id, since)
        )
        for job_type in types:
            history = await advice_store.type_history(
                conn, key.tenant_id, job_type, since, settings.analyzer_history_jobs
            )
            if not history.histories:
                continue
            advice = advise(
                key.tenant_id,
                job_type,
                history.histories,
                now,
                current_max_attempts=history.current_max_attempts,
            )
            applied = await advice_store.save_recommendation(
                conn,
                rec_id=advice.id,
                tenant=key.tenant_id,
                job_type=job_type,
                policy=advice.policy,
                body=advice.body,
            )
            items.append({**advice.body, "applied_at": applied.isoformat() if applied else None})
    return {"items": items}


@router.post(
    "/recommendations/{recommendation_id}/apply",
    summary="Write a recommended policy as the job type's default (scope policies:write).",
)
async def apply_recommendation(
    recommendation_id: UUID, key: PolicyWriter, engine: Engine, request: Request
) -> dict[str, Any]:
    """Write a recommended policy as the job type's default (scope policies:write or admin)."""
    async with db.transaction(engine) as conn:
        found = await advice_store.load_recommendation(conn, recommendation_id, key.tenant_id)
        if found is None:
            raise ProblemError(404, f"no recommendation {recommendation_id} for this tenant")
        job_type, policy = found
        updated = await advice_store.apply_policy(
            conn, recommendation_id, key.tenant_id, job_type, policy
        )
        await advice_store.record_audit(
            conn,
            actor(request, key),
            "policy.apply",
            f"{key.tenant_id}/{job_type}",
            {"recommendation": str(recommendation_id), "policy": policy},
        )
    return {
        "id": str(recommendation_id),
        "job_type": job_type,
        "policy": policy,
        "source": "analyzer",
        "applied_at": updated.isoformat(),
    }
