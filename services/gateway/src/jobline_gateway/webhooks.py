"""``/v1/webhooks``: a tenant's webhook endpoints and their delivery log (``webhooks:manage``).

The relay delivers (:mod:`jobline_relay.webhooks`); the gateway stores endpoints, checks
their URL against the address policy as far as it can without resolving names
(:func:`jobline.core.webhooks.addresses.check_url`), and reads and replays deliveries.
Every statement is scoped by tenant: another tenant's endpoint answers 404.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final
from uuid import UUID

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse

from jobline.api.webhooks import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
)
from jobline.core.webhooks import addresses, matching, signing
from jobline.pg import webhookstore
from jobline.pg.webhookstore import SQL
from jobline.web.problems import FieldError, ProblemError, responses
from jobline_gateway.cursors import decode_key, encode_key
from jobline_gateway.deps import Db, KnownQuery, SettingsDep, WebhookManager

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[KnownQuery])

# Cursor tokens name their listing, so one listing's cursor is refused by the other.
_ENDPOINTS: Final = "w"
_DELIVERIES: Final = "d"

Limit = Annotated[int | None, Query(ge=1, description="Page size; capped by the server's maximum.")]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=r"^[A-Za-z0-9_-]{1,512}$",
        description="`next_cursor` of the previous page.",
    ),
]


def _not_found(what: str, ident: UUID) -> ProblemError:
    return ProblemError(404, f"No {what} {ident}.", kind="not-found")


def _refused_url(exc: Exception) -> ProblemError:
    return ProblemError(
        422,
        f"The URL is refused: {exc}.",
        kind="validation",
        title="Invalid request",
        errors=[
            FieldError(field="url", location="body", pointer="/url", message=f"refused: {exc}")
        ],
    )


def _check_url(settings: SettingsDep, url: str) -> None:
    try:
        addresses.check_url(settings.webhook_address_policy, url)
    except (addresses.RefusedAddress, addresses.InvalidUrl) as exc:
        raise _refused_url(exc) from None


def _endpoint_out(row: Any) -> WebhookOut:
    return WebhookOut(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        event_types=list(row["event_types"]),
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        consecutive_failures=row["consecutive_failures"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _created(row: Any) -> WebhookCreated:
    return WebhookCreated(**_endpoint_out(row).model_dump(), secret=row["secret"])


def _delivery_out(row: Any) -> DeliveryOut:
    return DeliveryOut(
        id=row["id"],
        webhook_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        payload=row["payload"],
    )


def _position(row: Any, listing: str) -> str:
    return encode_key(f"{listing}|{row['created_at'].isoformat()}|{row['id']}")


def _parse_position(listing: str) -> Any:
    def parse(value: str) -> tuple[datetime, UUID]:
        kind, created, ident = value.split("|")
        at = datetime.fromisoformat(created)
        if kind != listing or at.tzinfo is None:
            raise ValueError("not a cursor of this listing")
        return at, UUID(ident)

    return parse


def _page_size(settings: SettingsDep, limit: int | None) -> int:
    return min(limit or settings.gateway_page_size_default, settings.gateway_page_size_max)


@router.post(
    "",
    operation_id="createWebhook",
    status_code=201,
    response_model=WebhookCreated,
    responses=responses(409),
)
async def create_webhook(
    body: WebhookIn, principal: WebhookManager, db: Db, settings: SettingsDep
) -> Any:
    """Create an endpoint; the answer carries its signing secret, shown only this once."""
    _check_url(settings, body.url)
    async with db.transaction() as conn:
        await SQL.execute(conn, "lock_tenant_endpoints", tenant_id=principal.tenant_id)
        count = await SQL.fetchval(conn, "count_endpoints", tenant_id=principal.tenant_id)
        if count >= settings.webhook_max_endpoints:
            raise ProblemError(
                409,
                f"The tenant has {count} webhook endpoints, the most allowed "
                f"({settings.webhook_max_endpoints}); delete one first.",
                kind="limit-reached",
            )
        row = await SQL.fetchrow(
            conn,
            "insert_endpoint",
            tenant_id=principal.tenant_id,
            url=body.url,
            description=body.description,
            event_types=matching.validate(body.event_types),
            secret=signing.generate_secret(),
        )
    out = _created(row)
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/webhooks/{out.id}"},
    )


@router.get("", operation_id="listWebhooks", response_model=WebhookPage, responses=responses())
async def list_webhooks(
    *,
    principal: WebhookManager,
    db: Db,
    settings: SettingsDep,
    limit: Limit = None,
    cursor: CursorParam = None,
) -> Any:
    """List the tenant's endpoints, oldest first, with cursor pagination."""
    after = decode_key(cursor, _parse_position(_ENDPOINTS)) if cursor else (None, None)
    size = _page_size(settings, limit)
    async with db.connection() as conn:
        rows = await SQL.fetch(
            conn,
            "list_endpoints",
            tenant_id=principal.tenant_id,
            after_created=after[0],
            after_id=after[1],
            limit=size + 1,
        )
    page = rows[:size]
    more = len(rows) > size
    return WebhookPage(
        webhooks=[_endpoint_out(r) for r in page],
        next_cursor=_position(page[-1], _ENDPOINTS) if more and page else None,
    )


async def _endpoint(db: Db, tenant_id: str, webhook_id: UUID) -> Any:
    async with db.connection() as conn:
        row = await SQL.fetchrow(conn, "get_endpoint", id=webhook_id, tenant_id=tenant_id)
    if row is None:
        raise _not_found("webhook", webhook_id)
    return row


@router.get(
    "/{webhook_id}", operation_id="getWebhook", response_model=WebhookOut, responses=responses(404)
)
async def get_webhook(webhook_id: UUID, principal: WebhookManager, db: Db) -> Any:
    """An endpoint: its URL, event types and state (never its secret)."""
    return _endpoint_out(await _endpoint(db, principal.tenant_id, webhook_id))


@router.patch(
    "/{webhook_id}",
    operation_id="updateWebhook",
    response_model=WebhookOut,
    responses=responses(404),
)
async def update_webhook(
    webhook_id: UUID,
    body: WebhookPatch,
    principal: WebhookManager,
    db: Db,
    settings: SettingsDep,
) -> Any:
    """Change an endpoint's URL, event types, description, or enable or disable it."""
    if body.url is not None:
        _check_url(settings, body.url)
    async with db.transaction() as conn:
        row = await SQL.fetchrow(
            conn, "lock_endpoint", id=webhook_id, tenant_id=principal.tenant_id
        )
        if row is None:
            raise _not_found("webhook", webhook_id)
        enabled = row["enabled"] if body.enabled is None else body.enabled
        changed = enabled != row["enabled"]
        updated = await SQL.fetchrow(
            conn,
            "update_endpoint",
            id=webhook_id,
            url=body.url if body.url is not None else row["url"],
            description=body.description if body.description is not None else row["description"],
            event_types=matching.validate(body.event_types)
            if body.event_types is not None
            else row["event_types"],
            enabled=enabled,
            disabled_reason=None if enabled else (row["disabled_reason"] or "disabled by a PATCH"),
            consecutive_failures=0 if enabled and changed else row["consecutive_failures"],
        )
        if changed:
            await webhookstore.hold_or_release(conn, webhook_id, enabled=enabled)
    return _endpoint_out(updated)


@router.delete(
    "/{webhook_id}", operation_id="deleteWebhook", status_code=204, responses=responses(404)
)
async def delete_webhook(webhook_id: UUID, principal: WebhookManager, db: Db) -> Response:
    """Delete an endpoint and its delivery log; nothing more is sent to it."""
    async with db.connection() as conn:
        deleted = await SQL.fetchval(
            conn, "delete_endpoint", id=webhook_id, tenant_id=principal.tenant_id
        )
    if deleted is None:
        raise _not_found("webhook", webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    operation_id="rotateWebhookSecret",
    response_model=WebhookCreated,
    responses=responses(404),
)
async def rotate_webhook_secret(
    webhook_id: UUID, principal: WebhookManager, db: Db, settings: SettingsDep
) -> Any:
    """A new signing secret, shown only in this answer; the previous one keeps signing
    beside it until `previous_secret_expires_at`, so receivers can switch without a gap."""
    async with db.connection() as conn:
        row = await SQL.fetchrow(
            conn,
            "rotate_secret",
            id=webhook_id,
            tenant_id=principal.tenant_id,
            secret=signing.generate_secret(),
            grace_seconds=settings.webhook_secret_grace_seconds,
        )
    if row is None:
        raise _not_found("webhook", webhook_id)
    return _created(row)


@router.get(
    "/{webhook_id}/deliveries",
    operation_id="listWebhookDeliveries",
    response_model=DeliveryPage,
    responses=responses(404),
)
async def list_webhook_deliveries(  # noqa: PLR0917 - FastAPI injects each by name
    webhook_id: UUID,
    principal: WebhookManager,
    db: Db,
    settings: SettingsDep,
    status: Annotated[DeliveryStatus | None, Query(description="Only deliveries so.")] = None,
    limit: Limit = None,
    cursor: CursorParam = None,
) -> Any:
    """The endpoint's delivery log, newest first, with cursor pagination."""
    before = decode_key(cursor, _parse_position(_DELIVERIES)) if cursor else (None, None)
    size = _page_size(settings, limit)
    await _endpoint(db, principal.tenant_id, webhook_id)
    async with db.connection() as conn:
        rows = await SQL.fetch(
            conn,
            "list_deliveries",
            endpoint_id=webhook_id,
            status=status.value if status else None,
            before_created=before[0],
            before_id=before[1],
            limit=size + 1,
        )
    page = rows[:size]
    more = len(rows) > size
    return DeliveryPage(
        deliveries=[_delivery_out(r) for r in page],
        next_cursor=_position(page[-1], _DELIVERIES) if more and page else None,
    )


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    operation_id="getWebhookDelivery",
    response_model=DeliveryOut,
    responses=responses(404),
)
async def get_webhook_delivery(
    webhook_id: UUID, delivery_id: UUID, principal: WebhookManager, db: Db
) -> Any:
    """One delivery: its event, status, attempts and the receiver's last answer."""
    await _endpoint(db, principal.tenant_id, webhook_id)
    async with db.connection() as conn:
        row = await SQL.fetchrow(conn, "get_delivery", id=delivery_id, endpoint_id=webhook_id)
    if row is None:
        raise _not_found("delivery", delivery_id)
    return _delivery_out(row)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    operation_id="replayWebhookDelivery",
    status_code=202,
    response_model=DeliveryOut,
    responses=responses(404, 409),
)
async def replay_webhook_delivery(
    webhook_id: UUID, delivery_id: UUID, principal: WebhookManager, db: Db
) -> Any:
    """Send a delivery again (whatever its status), with a fresh series of attempts; the
    same `webhook-id`, so a receiver may tell it is the same message. 409 while the
    endpoint is disabled: enable it first."""
    async with db.transaction() as conn:
        endpoint = await SQL.fetchrow(
            conn, "lock_endpoint", id=webhook_id, tenant_id=principal.tenant_id
        )
        if endpoint is None:
            raise _not_found("webhook", webhook_id)
        if not endpoint["enabled"]:
            raise ProblemError(
                409,
                "The webhook is disabled; enable it (PATCH enabled=true) to replay.",
                kind="webhook-disabled",
            )
        row = await SQL.fetchrow(conn, "replay_delivery", id=delivery_id, endpoint_id=webhook_id)
    if row is None:
        raise _not_found("delivery", delivery_id)
    return JSONResponse(_delivery_out(row).model_dump(mode="json"), status_code=202)
