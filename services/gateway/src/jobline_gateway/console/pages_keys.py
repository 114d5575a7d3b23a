"""``/ui/keys``: the tenant's own API keys (``keys:manage``): create (the key is shown once,
in the answer to the form), revoke. The API's rules: a new key holds only scopes the
session's key holds itself, and the operator manages the tenant on screen."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import HTMLResponse, RedirectResponse, Response

from jobline.api.keys import OwnKeyIn
from jobline.core import scopes
from jobline.core.apikeys import Scope
from jobline.pg import keystore
from jobline_gateway.admin import create_audited, revoke_audited
from jobline_gateway.console import render
from jobline_gateway.console.access import ChangerDep, Viewer, ViewerDep, form
from jobline_gateway.deps import actor

router = APIRouter(prefix="/ui/keys", include_in_schema=False)


async def _page(request: Request, viewer: Viewer, status: int = 200, **extra: Any) -> Response:
    viewer.require(Scope.KEYS_MANAGE)
    async with request.app.state.db.connection() as conn:
        records = await keystore.list_keys(conn, viewer.tenant)
    held = sorted(s.value for s in viewer.key.scopes)
    context: dict[str, Any] = {"keys": records, "scopes": held, "created": None, "errors": []}
    context.update(extra)
    response = await render.page(request, viewer, "keys.html", section="keys", **context)
    response.status_code = status
    return response


@router.get("", response_class=HTMLResponse)
async def keys_page(request: Request, viewer: ViewerDep) -> Response:
    """The tenant's keys, newest first, never their secrets."""
    return await _page(request, viewer)


@router.post("", response_class=HTMLResponse)
async def create(request: Request, viewer: ChangerDep) -> Response:
    """Create a key; the answer is the only time its secret is shown."""
    viewer.require(Scope.KEYS_MANAGE)
    raw = await form(request)
    chosen = [s for s in raw.get("scope", "").split(",") if s]
    try:
        body = OwnKeyIn.model_validate({"name": raw.get("name", ""), "scopes": chosen})
        granted = scopes.grantable(viewer.key.scopes, frozenset(map(Scope, body.scopes)))
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return await _page(request, viewer, 422, errors=errors)
    except scopes.ScopesNotHeld as exc:
        return await _page(request, viewer, 403, errors=[str(exc)])
    created = await create_audited(
        request.app.state.db,
        actor(request, viewer.principal),
        tenant=viewer.tenant,
        name=body.name,
        scopes=granted,
        expires_at=None,
    )
    return await _page(request, viewer, 201, created=created)


@router.post("/{key_id}/revoke")
async def revoke(key_id: UUID, request: Request, viewer: ChangerDep) -> Response:
    """Revoke one of the tenant's keys; it stops working (and its sessions end) at once."""
    viewer.require(Scope.KEYS_MANAGE)
    await revoke_audited(
        request.app.state.db,
        request,
        actor(request, viewer.principal),
        key_id,
        tenant=viewer.tenant,
    )
    return RedirectResponse("/ui/keys", status_code=303)
