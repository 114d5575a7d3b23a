"""``GET /v1/audit``: the operator's view of the audit log (``admin`` scope)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query

from jobline.api.fields import Timestamp
from jobline.api.governance import AuditEntryOut, AuditPage
from jobline.core.apikeys import TENANT_RE
from jobline.pg import audit
from jobline.web.problems import responses
from jobline_gateway.cursors import Cursor, invalid_cursor
from jobline_gateway.deps import Db, KnownQuery, Operator, SettingsDep

router = APIRouter(prefix="/v1/audit", tags=["admin"], dependencies=[KnownQuery])


@router.get("", operation_id="listAudit", response_model=AuditPage, responses=responses())
async def list_audit(
    *,
    _: Operator,
    db: Db,
    settings: SettingsDep,
    tenant: Annotated[str | None, Query(pattern=TENANT_RE.pattern)] = None,
    action: Annotated[
        str | None,
        Query(pattern=r"^[a-z]+\.[a-z]+$", max_length=64, description="e.g. job.cancel."),
    ] = None,
    key_id: Annotated[UUID | None, Query(description="Only this key's actions.")] = None,
    target: Annotated[
        str | None,
        # No NUL: PostgreSQL text cannot hold one (a 500, not a 422, otherwise).
        Query(pattern=r"^[^\x00]+$", max_length=300, description="e.g. a job id."),
    ] = None,
    since: Annotated[Timestamp | None, Query(description="Inclusive.")] = None,
    until: Annotated[Timestamp | None, Query(description="Exclusive.")] = None,
    limit: Annotated[int | None, Query(ge=1, description="Page size; capped.")] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` of the previous page.")
    ] = None,
) -> Any:
    """Audited actions (keys, quotas, policies, cancel, redrive), newest first."""
    after = None
    if cursor is not None:
        try:
            position = Cursor.decode(cursor)
        except ValueError:
            raise invalid_cursor() from None
        after = (position.created_at, position.id)
    size = min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)
    where = audit.AuditFilter(tenant, action, key_id, target, since, until)
    async with db.connection() as conn:
        rows = await audit.entries(conn, where, after, size + 1)
    page = rows[:size]
    return AuditPage(
        entries=[
            AuditEntryOut(
                id=e.id,
                at=e.at,
                key_id=e.key_id,
                tenant=e.tenant_id,
                action=e.action,
                target=e.target,
                address=e.address,
                detail=dict(e.detail),
            )
            for e in page
        ],
        next_cursor=Cursor(page[-1].at, page[-1].id).encode() if len(rows) > size else None,
    )
