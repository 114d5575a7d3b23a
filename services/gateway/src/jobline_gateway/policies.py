"""``/v1/policies``: a tenant's job-type retry policies (``policies:write`` to change).

A policy is the tenant's default for jobs of a type that name no max_attempts or backoff of
their own (see :mod:`jobline.core.jobdefaults`). The analyzer's apply writes the same rows
(source ``analyzer``); these write source ``api``. Every change is audited in its own
transaction, and the ``job_type_policies`` trigger drops every gateway's cached copy.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from jobline.api.fields import TYPE_PATTERN
from jobline.api.governance import PolicyIn, PolicyList, PolicyOut
from jobline.core.backoff import BackoffPolicy
from jobline.pg import audit, policystore
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.deps import Db, KnownQuery, PolicyWriter, Reader, SettingsDep, actor

router = APIRouter(prefix="/v1/policies", tags=["policies"], dependencies=[KnownQuery])

JobTypeParam = Annotated[str, Path(pattern=TYPE_PATTERN, description="The job type.")]


def _out(row: Any) -> PolicyOut:
    return PolicyOut(
        type=row["type"],
        max_attempts=row["max_attempts"],
        backoff=row["backoff"],
        non_retryable_errors=list(row["non_retryable_errors"]),
        source=row["source"],
        updated_at=row["updated_at"],
    )


@router.get("", operation_id="listPolicies", response_model=PolicyList, responses=responses())
async def list_policies(principal: Reader, db: Db) -> Any:
    """The tenant's job-type policies."""
    async with db.connection() as conn:
        rows = await policystore.list_policies(conn, principal.tenant_id)
    return PolicyList(policies=[_out(r) for r in rows])


@router.put(
    "/{job_type}", operation_id="setPolicy", response_model=PolicyOut, responses=responses()
)
async def set_policy(  # noqa: PLR0917 - FastAPI injects each by name
    job_type: JobTypeParam,
    body: PolicyIn,
    principal: PolicyWriter,
    db: Db,
    settings: SettingsDep,
    request: Request,
) -> Any:
    """Set the tenant's retry defaults for a job type (replacing any, the analyzer's too)."""
    backoff = None
    if body.backoff is not None:
        # Fields left out take the platform default's, as a job's partial backoff does.
        given = {**settings.job_defaults.backoff.to_dict(), **body.backoff.given()}
        try:
            backoff = BackoffPolicy.from_dict(given).to_dict()
        except ValueError as exc:
            raise ProblemError(
                422,
                f"Invalid backoff: {exc}.",
                kind="validation",
                errors=[
                    FieldError(
                        field="backoff", location="body", pointer="/backoff", message=str(exc)
                    )
                ],
            ) from None
    async with db.transaction() as conn:
        row = await policystore.set_policy(
            conn,
            principal.tenant_id,
            job_type,
            max_attempts=body.max_attempts,
            backoff=backoff,
            non_retryable_errors=body.non_retryable_errors,
            source="api",
        )
        await audit.record(
            conn,
            actor(request, principal),
            "policy.set",
            f"{principal.tenant_id}/{job_type}",
            {"max_attempts": body.max_attempts, "backoff": backoff},
        )
    return _out(row)


@router.delete(
    "/{job_type}", operation_id="deletePolicy", status_code=204, responses=responses(404)
)
async def delete_policy(
    job_type: JobTypeParam, principal: PolicyWriter, db: Db, request: Request
) -> Response:
    """Remove the tenant's policy for a job type: the platform defaults apply again."""
    async with db.transaction() as conn:
        if not await policystore.delete_policy(conn, principal.tenant_id, job_type):
            raise ProblemError(404, f"No policy for job type {job_type!r}.")
        await audit.record(
            conn, actor(request, principal), "policy.delete", f"{principal.tenant_id}/{job_type}"
        )
    return Response(status_code=204)
