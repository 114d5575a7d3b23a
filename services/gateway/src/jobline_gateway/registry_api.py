"""The registry's routes: ``GET /v1/job-types`` for tenants; declaring queues and job types
for the operator (``/v1/admin/queues``, ``/v1/admin/job-types``, ``admin`` scope).

Declaring a type ahead of its workers makes deploy order irrelevant: the gateway accepts the
type as soon as it is declared, and the worker's registration at start replaces the
declaration with what its handler says (last writer wins). Every write here notifies the
gateways (and relays), which drop their copies at once; this gateway before it answers.
"""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Request

from jobline.api.fields import QUEUE_PATTERN, TYPE_PATTERN
from jobline.api.registry import (
    JobTypeAdminList,
    JobTypeAdminOut,
    JobTypeIn,
    JobTypeList,
    JobTypeOut,
    QueueDeclarations,
    QueueIn,
    QueueOut,
)
from jobline.core.payloads import InvalidSchema, check_schema
from jobline.core.registry import JobTypeRecord, QueueDeclaration
from jobline.pg import registry
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.deps import Db, KnownQuery, Operator, Reader
from jobline_gateway.registry_cache import RegistryCache

router = APIRouter(prefix="/v1/job-types", tags=["job types"], dependencies=[KnownQuery])
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[KnownQuery])

OPERATOR = "operator"


def _cache(request: Request) -> RegistryCache:
    cache: RegistryCache = request.app.state.registry
    return cache


def _type_out(row: registry.JobTypeRow) -> JobTypeOut:
    return JobTypeOut(
        name=row.record.name,
        queue=row.record.queue,
        payload_schema=dict(row.record.payload_schema) if row.record.payload_schema else None,
        source=row.source,
        updated_at=row.updated_at,
    )


def _type_admin_out(row: registry.JobTypeRow) -> JobTypeAdminOut:
    tenants = row.record.allowed_tenants
    return JobTypeAdminOut(
        **_type_out(row).model_dump(),
        allowed_tenants=sorted(tenants) if tenants is not None else None,
        registered_by=row.registered_by,
        created_at=row.created_at,
    )


def _queue_out(row: registry.QueueRow) -> QueueOut:
    return QueueOut(
        name=row.declaration.name,
        partitions=row.declaration.partitions,
        declared_by=row.declared_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        f"The request is invalid: {field}.",
        kind="validation",
        title="Invalid request",
        errors=[FieldError(field=field, location="body", pointer=f"/{field}", message=message)],
    )


@router.get("", operation_id="listJobTypes", response_model=JobTypeList, responses=responses())
async def list_job_types(principal: Reader, request: Request) -> Any:
    """The job types the caller's tenant may submit, with their payload schemas."""
    snapshot = await _cache(request).get()
    return JobTypeList(
        job_types=[
            _type_out(t) for t in snapshot.stored.types if t.record.allows(principal.tenant_id)
        ]
    )


@admin_router.get(
    "/queues", operation_id="listQueues", response_model=QueueDeclarations, responses=responses()
)
async def list_queues(_: Operator, db: Db) -> Any:
    """Every declared queue; jobs may name only these, and only these get topics."""
    async with db.connection() as conn:
        stored = await registry.load(conn)
    return QueueDeclarations(queues=[_queue_out(q) for q in stored.queues])


@admin_router.put(
    "/queues/{name}", operation_id="declareQueue", response_model=QueueOut, responses=responses()
)
async def declare_queue(
    name: Annotated[str, Path(pattern=QUEUE_PATTERN, description="Not `dlq`.")],
    body: QueueIn,
    _: Operator,
    db: Db,
    request: Request,
) -> Any:
    """Declare a queue (or change the partitions its topic is created with)."""
    try:
        declaration = QueueDeclaration(name, body.partitions)
    except ValueError as exc:
        raise ProblemError(
            422,
            str(exc),
            kind="validation",
            title="Invalid request",
            errors=[FieldError(field="name", location="path", message=str(exc))],
        ) from None
    async with db.connection() as conn:
        row = await registry.declare_queue(conn, declaration, OPERATOR)
    _cache(request).changed("queues")
    return _queue_out(row)


@admin_router.get(
    "/job-types",
    operation_id="listAllJobTypes",
    response_model=JobTypeAdminList,
    responses=responses(),
)
async def list_all_job_types(_: Operator, db: Db) -> Any:
    """Every registered job type, with its allowed tenants and who registered it."""
    async with db.connection() as conn:
        rows = await registry.load_types(conn)
    return JobTypeAdminList(job_types=[_type_admin_out(t) for t in rows])


@admin_router.put(
    "/job-types/{name:path}",
    operation_id="declareJobType",
    response_model=JobTypeAdminOut,
    responses=responses(),
)
async def declare_job_type(
    name: Annotated[str, Path(pattern=TYPE_PATTERN)],
    body: JobTypeIn,
    _: Operator,
    db: Db,
    request: Request,
) -> Any:
    """Declare a job type before its workers start: its queue, payload schema and tenants."""
    if body.payload_schema is not None:
        try:
            check_schema(body.payload_schema)
        except InvalidSchema as exc:
            raise _invalid("payload_schema", str(exc)) from None
    record = JobTypeRecord(
        name,
        body.queue,
        body.payload_schema,
        frozenset(body.allowed_tenants) if body.allowed_tenants is not None else None,
    )
    try:
        async with db.transaction() as conn:
            await registry.register_job_types(
                conn, [record], source=OPERATOR, registered_by=OPERATOR
            )
            row = await registry.job_type(conn, name)
    except asyncpg.ForeignKeyViolationError:
        raise _invalid("queue", f"queue {body.queue!r} is not declared") from None
    assert row is not None
    _cache(request).changed("job_types")
    return _type_admin_out(row)
