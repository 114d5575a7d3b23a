"""``/v1/job-types/{type}/limits``: a tenant's own concurrency and rate limits of a job type.

Read with ``jobs:read``; set or removed with ``policies:write`` (or ``admin``), audited.
Workers read the rows within ``worker_limits_refresh_seconds``; jobs held under the old
limits are released and decided again under the new ones (jobline.pg.typelimits).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from jobline.api.fields import TYPE_PATTERN
from jobline.api.typelimits import ConcurrencyOut, LimitsIn, LimitsOut, RateOut
from jobline.core.limits import Override
from jobline.pg import audit, typelimits
from jobline.web.problems import ProblemError, responses
from jobline_gateway.deps import Db, KnownQuery, PolicyWriter, Reader, actor

router = APIRouter(prefix="/v1/job-types", tags=["job types"], dependencies=[KnownQuery])

JobTypeParam = Annotated[str, Path(pattern=TYPE_PATTERN, description="The job type.")]


def _out(row: Any) -> LimitsOut:
    concurrency = rate = None
    if row["concurrency"] is not None:
        concurrency = ConcurrencyOut(max=row["concurrency"], key=row["concurrency_key"])
    if row["rate_limit"] is not None:
        rate = RateOut(limit=row["rate_limit"], key=row["rate_key"])
    return LimitsOut(
        type=row["type"], concurrency=concurrency, rate=rate, updated_at=row["updated_at"]
    )


def _override(body: LimitsIn) -> Override:
    """The schema already admits only valid limits; the rules still have the last word."""
    c, r = body.concurrency, body.rate
    try:
        return Override(
            c.max if c else None, c.key if c else None, r.limit if r else None, r.key if r else None
        )
    except ValueError as exc:
        raise ProblemError(422, f"Invalid limits: {exc}.", kind="validation") from None


@router.get(
    "/{job_type:path}/limits",
    operation_id="getJobTypeLimits",
    response_model=LimitsOut,
    responses=responses(404),
)
async def get_limits(job_type: JobTypeParam, principal: Reader, db: Db) -> Any:
    """The tenant's own limits of the job type (404: the handler's apply)."""
    async with db.connection() as conn:
        row = await typelimits.get(conn, principal.tenant_id, job_type)
    if row is None:
        raise ProblemError(404, f"No limits of your own for job type {job_type!r}.")
    return _out(row)


@router.put(
    "/{job_type:path}/limits",
    operation_id="setJobTypeLimits",
    response_model=LimitsOut,
    responses=responses(),
)
async def set_limits(
    job_type: JobTypeParam, body: LimitsIn, principal: PolicyWriter, db: Db, request: Request
) -> Any:
    """Set the tenant's own limits of the job type (replacing the handler's for it)."""
    override = _override(body)
    async with db.transaction() as conn:
        row = await typelimits.put(conn, principal.tenant_id, job_type, override)
        await audit.record(
            conn,
            actor(request, principal),
            "limits.set",
            f"{principal.tenant_id}/{job_type}",
            body.model_dump(),
        )
    return _out(row)


@router.delete(
    "/{job_type:path}/limits",
    operation_id="deleteJobTypeLimits",
    status_code=204,
    responses=responses(404),
)
async def delete_limits(
    job_type: JobTypeParam, principal: PolicyWriter, db: Db, request: Request
) -> Response:
    """Remove the tenant's own limits of the job type: the handler's apply again."""
    async with db.transaction() as conn:
        if not await typelimits.delete(conn, principal.tenant_id, job_type):
            raise ProblemError(404, f"No limits of your own for job type {job_type!r}.")
        await audit.record(
            conn, actor(request, principal), "limits.delete", f"{principal.tenant_id}/{job_type}"
        )
    return Response(status_code=204)
