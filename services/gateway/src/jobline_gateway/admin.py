"""``/v1/admin/keys``: the platform operator's API key management (``admin`` scope).

The same keystore functions back ``jobline keys`` and a tenant's own ``/v1/keys``; a key's
plaintext is returned once, by the POST that creates it, and never stored. Every create and
revoke is audited in its own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request

from jobline.api.keys import KeyCreated, KeyIn, KeyList, KeyOut
from jobline.core.apikeys import TENANT_RE, Scope
from jobline.pg import audit, keystore
from jobline.pg.db import Database
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.deps import Db, KnownQuery, Operator, actor

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], dependencies=[KnownQuery])


def check_expiry(expires_at: datetime | None) -> None:
    """422 unless ``expires_at`` (when given) lies in the future."""
    if expires_at is not None and expires_at <= datetime.now(UTC):
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


async def create_audited(
    db: Database,
    who: audit.Actor,
    *,
    tenant: str,
    name: str,
    scopes: frozenset[Scope],
    expires_at: datetime | None,
) -> KeyCreated:
    """Create a key and its audit entry in one transaction."""
    check_expiry(expires_at)
    async with db.transaction() as conn:
        record, plaintext = await keystore.create_key(
            conn, tenant_id=tenant, name=name, scopes=scopes, expires_at=expires_at
        )
        await audit.record(
            conn,
            who,
            "key.create",
            str(record.id),
            {"tenant": tenant, "name": name, "scopes": sorted(s.value for s in scopes)},
        )
    return KeyCreated(**KeyOut.of(record).model_dump(), key=plaintext)


async def revoke_audited(
    db: Database, request: Request, who: audit.Actor, key_id: UUID, *, tenant: str | None
) -> KeyOut:
    """Revoke a key (``tenant``'s only, when given) and audit it; 404 if there is none."""
    async with db.transaction() as conn:
        record = await keystore.revoke_key(conn, key_id, tenant_id=tenant)
        if record is not None:
            await audit.record(conn, who, "key.revoke", str(key_id), {"tenant": record.tenant_id})
    # Every gateway drops its copy on the NOTIFY; this one before it answers.
    request.app.state.catalog.forget_key(key_id)
    if record is None:
        raise ProblemError(404, f"No API key {key_id}.")
    return KeyOut.of(record)


@router.post(
    "", operation_id="createKey", status_code=201, response_model=KeyCreated, responses=responses()
)
async def create_key(body: KeyIn, principal: Operator, db: Db, request: Request) -> Any:
    """Create an API key for a tenant; the response is the only time the key is shown."""
    return await create_audited(
        db,
        actor(request, principal),
        tenant=body.tenant,
        name=body.name,
        scopes=frozenset(map(Scope, body.scopes)),
        expires_at=body.expires_at,
    )


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
async def revoke_key(key_id: UUID, principal: Operator, db: Db, request: Request) -> Any:
    """Revoke an API key; it stops working on the next request."""
    return await revoke_audited(db, request, actor(request, principal), key_id, tenant=None)
