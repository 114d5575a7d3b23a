"""``/v1/keys``: a tenant's own API keys (``keys:manage`` scope).

Confined twice: the tenant is always the calling key's (there is no tenant parameter to get
wrong), and a new key may carry only scopes the calling key holds itself
(:func:`jobline.core.scopes.grantable`), so ``keys:manage`` never escalates. Another tenant's
key answers 404, exactly like a key that does not exist.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from jobline.api.keys import KeyCreated, KeyList, KeyOut, OwnKeyIn
from jobline.core import scopes
from jobline.core.apikeys import Scope
from jobline.pg import keystore
from jobline.web.problems import ProblemError, responses
from jobline_gateway.admin import create_audited, revoke_audited
from jobline_gateway.deps import Db, KeyManager, KnownQuery, actor

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[KnownQuery])


@router.post(
    "",
    operation_id="createOwnKey",
    status_code=201,
    response_model=KeyCreated,
    responses=responses(403),
)
async def create_own_key(body: OwnKeyIn, principal: KeyManager, db: Db, request: Request) -> Any:
    """Create a key for the caller's tenant, with scopes the calling key holds itself."""
    try:
        granted = scopes.grantable(principal.scopes, frozenset(map(Scope, body.scopes)))
    except scopes.ScopesNotHeld as exc:
        raise ProblemError(403, f"{exc}.", kind="forbidden") from None
    return await create_audited(
        db,
        actor(request, principal),
        tenant=principal.tenant_id,
        name=body.name,
        scopes=granted,
        expires_at=body.expires_at,
    )


@router.get("", operation_id="listOwnKeys", response_model=KeyList, responses=responses())
async def list_own_keys(principal: KeyManager, db: Db) -> Any:
    """The caller's tenant's keys (never their secrets)."""
    async with db.connection() as conn:
        records = await keystore.list_keys(conn, principal.tenant_id)
    return KeyList(keys=[KeyOut.of(r) for r in records])


@router.delete(
    "/{key_id}", operation_id="revokeOwnKey", response_model=KeyOut, responses=responses(404)
)
async def revoke_own_key(key_id: UUID, principal: KeyManager, db: Db, request: Request) -> Any:
    """Revoke one of the caller's tenant's keys; it stops working on the next request."""
    return await revoke_audited(
        db, request, actor(request, principal), key_id, tenant=principal.tenant_id
    )
