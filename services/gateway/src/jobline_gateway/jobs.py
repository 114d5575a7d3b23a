"""``/v1/jobs``: submit, batch submit, read, list, attempts, cancel, redrive.

A submission is one statement (its own transaction) on a pooled connection; a read is one
or two statements; cancel and redrive lock the job in a short transaction of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, TypeVar
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, StringConstraints, TypeAdapter, ValidationError
from starlette.datastructures import State
from starlette.responses import Response

from jobline.api.fields import QUEUE_PATTERN, TYPE_PATTERN, Timestamp
from jobline.api.jobs import AttemptList, AttemptOut, BatchIn, BatchOut, JobOut, JobPage, JobSpec
from jobline.core import jsontext
from jobline.core.apikeys import Scope
from jobline.core.errors import IllegalTransition
from jobline.core.job import JobState
from jobline.core.states import Cancel, Event, Redrive
from jobline.pg import audit, jobstore, uniquekeys
from jobline.pg.db import Database
from jobline.pg.keystore import KeyRecord
from jobline.web.problems import FieldError, ProblemError, quota_problem, responses
from jobline_gateway import idempotency, store, submission, uniqueness
from jobline_gateway.admission import QuotaExceeded
from jobline_gateway.cursors import Cursor, invalid_cursor
from jobline_gateway.deps import Db, KnownQuery, Reader, SettingsDep, Writer, actor, authorize
from jobline_gateway.metrics import IDEMPOTENT_REPLAYS, JOBS_SUBMITTED, SUBMIT_SECONDS
from jobline_gateway.settings import Settings
from jobline_gateway.tracing import submit_span

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[KnownQuery])

REPLAYED_HEADER: Final = "Idempotent-Replayed"
# W3C trace context; anything else is ignored rather than refused.
_TRACEPARENT: Final = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

IDEMPOTENCY_KEY_DOC: Final = "Makes the submission safe to retry: same key and body, same job(s)."
_KEY: Final = TypeAdapter(
    Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
)
M = TypeVar("M", bound=BaseModel)

_REPLAY_DOC: Final = {
    "description": "Idempotent replay: the original answer to this Idempotency-Key (header "
    "`Idempotent-Replayed`); or debounced: the unfinished job that holds the `unique` key.",
    "headers": {REPLAYED_HEADER: {"schema": {"type": "string", "enum": ["true"]}}},
}


def _traceparent(request: Request) -> str | None:
    value = request.headers.get("traceparent")
    return value if value and _TRACEPARENT.match(value) else None


async def _accept(
    request: Request,
    *,
    principal: KeyRecord,
    specs: list[JobSpec],
    body: Callable[[], Any],
    key: str | None,
    endpoint: str,
) -> idempotency.Accepted:
    started = time.perf_counter()
    state: State = request.app.state
    try:  # tenant quotas; no statement while this gateway holds leased tokens
        await state.admission.admit(principal.tenant_id, len(specs))
    except QuotaExceeded as exc:
        raise quota_problem(exc) from None
    with submit_span(
        _traceparent(request), tenant=principal.tenant_id, endpoint=endpoint, jobs=len(specs)
    ) as traceparent:
        accepted = await submission.submit(
            state.db,
            state.catalog,
            state.registry,
            state.settings.job_defaults,
            principal.tenant_id,
            principal.id,
            specs,
            now=datetime.now(UTC),
            idempotency_key=key,
            # Only a keyed request is ever compared with another one.
            fingerprint=idempotency.request_hash(endpoint, body()) if key is not None else None,
            key_retention=timedelta(seconds=state.settings.idempotency_retention_seconds),
            traceparent=traceparent,
            batch=endpoint == "batch",
            accept_undeclared=state.settings.gateway_accept_undeclared,
            retention=timedelta(seconds=state.settings.job_retention_seconds),
        )
    SUBMIT_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    if accepted.replayed:
        IDEMPOTENT_REPLAYS.inc()
    for job_type in accepted.types:
        JOBS_SUBMITTED.labels(job_type).inc()
    return accepted


# The two submit routes parse and answer by themselves: FastAPI's request handling (the
# dependency graph, body parsing into a model, response validation and encoding) cost about
# a third of a submission's CPU in the gateway (measured with py-spy under `make bench` A1).
# Their OpenAPI entries are the same as a body-parameter route's (see app.py: submit_docs).
submit_router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    try:
        return _KEY.validate_python(value)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("header", "Idempotency-Key")} for e in exc.errors()]
        ) from None


def _no_query(request: Request) -> None:
    if request.query_params:
        problems = [
            FieldError(field=name, location="query", message="unknown parameter")
            for name in sorted(set(request.query_params))
        ]
        raise ProblemError(
            422,
            f"Invalid query parameters: {', '.join(repr(p.field) for p in problems)}.",
            kind="validation",
            title="Invalid request",
            errors=problems,
        )


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()], body=body
        ) from None


def _json(content: Any, status: int, headers: dict[str, str]) -> Response:
    # jsontext: a replayed response may hold integers beyond 64 bits, which orjson refuses.
    return Response(jsontext.dumps(content), status, headers, media_type="application/json")


@submit_router.post(
    "",
    operation_id="submitJob",
    status_code=201,
    response_model=JobOut,
    responses={200: {"model": JobOut, **_REPLAY_DOC}, **responses(409, 422)},
)
async def submit_job(request: Request) -> Response:
    """Submit one job; it is queued, or scheduled when run_at/delay_seconds lie ahead."""
    principal = await authorize(request, Scope.JOBS_WRITE)
    key = _idempotency_key(request)
    _no_query(request)
    spec = _parse(JobSpec, await request.body())
    accepted = await _accept(
        request,
        principal=principal,
        specs=[spec],
        body=lambda: spec.model_dump(mode="json"),
        key=key,
        endpoint="single",
    )
    job = accepted.jobs[0]
    location = {"Location": f"/v1/jobs/{job['id']}"}
    if accepted.replayed:
        return _json(job, 200, {REPLAYED_HEADER: "true", **location})
    return _json(job, 200 if accepted.existing else 201, location)


@submit_router.post(
    "/batch",
    operation_id="submitBatch",
    status_code=201,
    response_model=BatchOut,
    responses={200: {"model": BatchOut, **_REPLAY_DOC}, **responses(409, 422)},
)
async def submit_batch(request: Request) -> Response:
    """Submit up to 1,000 jobs in one transaction: all are accepted or none."""
    principal = await authorize(request, Scope.JOBS_WRITE)
    key = _idempotency_key(request)
    _no_query(request)
    batch = _parse(BatchIn, await request.body())
    accepted = await _accept(
        request,
        principal=principal,
        specs=batch.jobs,
        body=lambda: batch.model_dump(mode="json"),
        key=key,
        endpoint="batch",
    )
    if accepted.replayed:
        return _json({"jobs": accepted.jobs}, 200, {REPLAYED_HEADER: "true"})
    return _json({"jobs": accepted.jobs}, 200 if accepted.existing else 201, {})


SUBMIT_BODIES: Final[dict[str, type[BaseModel]]] = {"submitJob": JobSpec, "submitBatch": BatchIn}
"""The request body model of each submit route, for their OpenAPI entries."""


@router.get("", operation_id="listJobs", response_model=JobPage, responses=responses())
async def list_jobs(
    *,
    principal: Reader,
    db: Db,
    settings: SettingsDep,
    status: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    type: Annotated[str | None, Query(pattern=TYPE_PATTERN)] = None,
    queue: Annotated[str | None, Query(pattern=QUEUE_PATTERN)] = None,
    created_after: Annotated[Timestamp | None, Query(description="Inclusive.")] = None,
    created_before: Annotated[Timestamp | None, Query(description="Exclusive.")] = None,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size; capped by the server's maximum.")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> Any:
    """List the tenant's jobs, newest first, with filters and cursor pagination."""
    after = None
    if cursor is not None:
        try:
            after = Cursor.decode(cursor)
        except ValueError:
            raise invalid_cursor() from None
    size = min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)
    where = store.JobFilter(
        status=status.value if status else None,
        type=type,
        queue=queue,
        created_after=created_after,
        created_before=created_before,
    )
    async with db.connection() as conn:
        page, following = await store.list_jobs(conn, principal.tenant_id, where, after, size)
    return JobPage(
        jobs=[JobOut.of(j) for j in page],
        next_cursor=following.encode() if following else None,
    )


# `:uuid`: a segment that is no UUID (GET /v1/jobs/batch) matches no job route, so a method
# the path does not declare is a 405, not a 422 about job_id.
@router.get(
    "/{job_id:uuid}", operation_id="getJob", response_model=JobOut, responses=responses(404)
)
async def get_job(job_id: UUID, principal: Reader, db: Db) -> Any:
    """A job: status, attempts, timings, last error and result."""
    async with db.connection() as conn:
        job = await store.get_job(conn, principal.tenant_id, job_id)
    if job is None:
        raise _not_found(job_id)
    return JobOut.of(job)


@router.get(
    "/{job_id}/attempts",
    operation_id="listAttempts",
    response_model=AttemptList,
    responses=responses(404),
)
async def list_attempts(job_id: UUID, principal: Reader, db: Db) -> Any:
    """Each attempt of a job: worker, start, end, outcome and error."""
    async with db.connection() as conn:
        if not await store.job_exists(conn, principal.tenant_id, job_id):
            raise _not_found(job_id)
        rows = await store.attempts(conn, job_id)
    return AttemptList(attempts=[AttemptOut(**dict(r)) for r in rows])


@router.post(
    "/{job_id}/cancel",
    operation_id="cancelJob",
    response_model=JobOut,
    responses=responses(404, 409),
)
async def cancel_job(
    job_id: UUID, principal: Writer, db: Db, request: Request, settings: SettingsDep
) -> Any:
    """Cancel a job: at once unless running, where cancellation is requested of the worker."""
    return await apply_event(
        db, principal, actor(request, principal), job_id, Cancel(), settings=settings
    )


@router.post(
    "/{job_id}/redrive",
    operation_id="redriveJob",
    response_model=JobOut,
    responses=responses(404, 409),
)
async def redrive_job(
    job_id: UUID, principal: Writer, db: Db, request: Request, settings: SettingsDep
) -> Any:
    """Send a dead job back to the queue with a fresh attempt budget."""
    return await apply_event(
        db, principal, actor(request, principal), job_id, Redrive(), settings=settings
    )


async def apply_event(
    db: Database,
    principal: KeyRecord,
    who: audit.Actor,
    job_id: UUID,
    event: Event,
    *,
    settings: Settings,
) -> JobOut:
    """Cancel or redrive a job of ``principal``'s tenant, audited in the same transaction
    (the routes here and the console's DLQ group redrive)."""
    action = "job.cancel" if isinstance(event, Cancel) else "job.redrive"
    # A job cancelled here finishes here: its purge_after follows the configured retention.
    retention = timedelta(seconds=settings.job_retention_seconds)
    try:
        async with db.transaction() as conn:
            applied = await jobstore.apply(
                conn,
                job_id,
                event,
                datetime.now(UTC),
                tenant_id=principal.tenant_id,
                retention=retention,
            )
            if applied is not None:  # audited in the transaction that acts
                await audit.record(
                    conn, who, action, str(job_id), {"from": applied.before.state.value}
                )
    except IllegalTransition as exc:
        raise ProblemError(409, str(exc), kind="illegal-transition") from None
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != uniqueness.UNIQUE_INDEX:
            raise
        # A redriven job takes its unique key back; a newer unfinished job holds it.
        raise await _key_held(db, principal.tenant_id, job_id) from None
    if applied is None:
        raise _not_found(job_id)
    return JobOut.of(applied.after)


async def _key_held(db: Database, tenant_id: str, job_id: UUID) -> ProblemError:
    async with db.connection() as conn:
        job = await store.get_job(conn, tenant_id, job_id)
        key = job.unique_key if job is not None else None
        holders = await uniquekeys.unique_holders(conn, tenant_id, [key]) if key else {}
    holder = holders[key].id if key in holders else None
    return ProblemError(
        409,
        f"Job {job_id} cannot be redriven: job {holder or '(finished meanwhile)'} holds its "
        f"unique key {key!r}.",
        kind="unique-key-held",
        title="Unique key held",
        headers={"Location": f"/v1/jobs/{holder}"} if holder else None,
        job_id=holder,
    )


def _not_found(job_id: UUID) -> ProblemError:
    # Another tenant's job answers exactly like a job that never existed.
    return ProblemError(404, f"No job {job_id}.")
