"""``/v1/admin/keys``: the platform operator's API key management (``admin`` scope).

The same keystore functions back ``jobline keys``; a key's plaintext is returned once, by
the POST that creates it, and never stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from jobline.api.keys import KeyCreated, KeyIn, KeyList, KeyOut
from jobline.core.apikeys import TENANT_RE, Scope
from jobline.pg import keystore
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.deps import Db, KnownQuery, Operator

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], dependencies=[KnownQuery])


@router.post(
    "", operation_id="createKey", status_code=201, response_model=KeyCreated, responses=responses()
)
async def create_key(body: KeyIn, _: Operator, db: Db) -> Any:
    """Create an API key for a tenant; the response is the only time the key is shown."""
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise ProblemError(
            422,
            "expires_at must be in the future.",
            kind="validation",
            errors=[
                FieldError(
                    field="expires_at",
                    location="body",
                    pointer="/expires_at",
                    message="must be in the future",
                )
            ],
        )
    async with db.transaction() as conn:
        record, plaintext = await keystore.create_key(
            conn,
            tenant_id=body.tenant,
            name=body.name,
            scopes=frozenset(map(Scope, body.scopes)),
            expires_at=body.expires_at,
        )
    return KeyCreated(**KeyOut.of(record).model_dump(), key=plaintext)


@router.get("", operation_id="listKeys", response_model=KeyList, responses=responses())
async def list_keys(
    _: Operator,
    db: Db,
    tenant: Annotated[
        str | None, Query(pattern=TENANT_RE.pattern, description="Only this tenant's keys.")
    ] = None,
) -> Any:
    """List API keys (never their secrets), optionally of one tenant."""
    async with db.connection() as conn:
        records = await keystore.list_keys(conn, tenant)
    return KeyList(keys=[KeyOut.of(r) for r in records])


@router.delete(
    "/{key_id}", operation_id="revokeKey", response_model=KeyOut, responses=responses(404)
)
async def revoke_key(key_id: UUID, _: Operator, db: Db, request: Request) -> Any:
    """Revoke an API key; it stops working on the next request."""
    async with db.connection() as conn:
        record = await keystore.revoke_key(conn, key_id)
    # Every gateway drops its copy on the NOTIFY; this one before it answers.
    request.app.state.catalog.forget_key(key_id)
    if record is None:
        raise ProblemError(404, f"No API key {key_id}.")
    return KeyOut.of(record)
