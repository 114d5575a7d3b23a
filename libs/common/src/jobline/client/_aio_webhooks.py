"""The webhooks part of :class:`~jobline.client.AsyncClient`: endpoints, their secrets, the
delivery log and replay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from jobline.api.webhooks import (
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    WebhookCreated,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
)
from jobline.client import _admin_calls as calls
from jobline.client import pagination
from jobline.client._aio_base import AsyncBase
from jobline.client._calls import Id


class AsyncWebhooks(AsyncBase):
    """Webhooks (see :class:`~jobline.client.AsyncClient`)."""

    async def create_webhook(
        self, url: str, event_types: Iterable[str], *, description: str | None = None
    ) -> WebhookCreated:
        """A new endpoint; its signing secret (``.secret``) is shown only in this answer."""
        return await self._run(
            calls.create_webhook(calls.webhook_body(url, event_types, description))
        )

    async def list_webhooks(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WebhookPage:
        """One page of the tenant's endpoints, oldest first."""
        return await self._run(calls.list_webhooks(limit=limit, cursor=cursor))

    def iter_webhooks(self, *, page_size: int | None = None) -> AsyncIterator[WebhookOut]:
        """Every endpoint of the tenant, oldest first."""

        async def fetch(cursor: str | None) -> WebhookPage:
            return await self.list_webhooks(limit=page_size, cursor=cursor)

        return pagination.aiterate(fetch, lambda page: page.webhooks)

    async def get_webhook(self, webhook_id: Id) -> WebhookOut:
        """An endpoint by id (never its secret)."""
        return await self._run(calls.get_webhook(webhook_id))

    async def update_webhook(
        self, webhook_id: Id, changes: WebhookPatch | Mapping[str, Any]
    ) -> WebhookOut:
        """Change an endpoint's URL, event types or description, or enable or disable it."""
        return await self._run(calls.update_webhook(webhook_id, changes))

    async def delete_webhook(self, webhook_id: Id) -> None:
        """Delete an endpoint and its delivery log."""
        await self._run(calls.delete_webhook(webhook_id))

    async def rotate_webhook_secret(self, webhook_id: Id) -> WebhookCreated:
        """A new signing secret (the previous one signs too for a grace period)."""
        return await self._run(calls.rotate_webhook_secret(webhook_id))

    async def webhook_deliveries(
        self,
        webhook_id: Id,
        *,
        status: DeliveryStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """One page of an endpoint's delivery log, newest first."""
        return await self._run(
            calls.list_webhook_deliveries(webhook_id, status=status, limit=limit, cursor=cursor)
        )

    def iter_webhook_deliveries(
        self,
        webhook_id: Id,
        *,
        status: DeliveryStatus | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[DeliveryOut]:
        """Every delivery of an endpoint, newest first."""

        async def fetch(cursor: str | None) -> DeliveryPage:
            return await self.webhook_deliveries(
                webhook_id, status=status, limit=page_size, cursor=cursor
            )

        return pagination.aiterate(fetch, lambda page: page.deliveries)

    async def get_webhook_delivery(self, webhook_id: Id, delivery_id: Id) -> DeliveryOut:
        """One delivery of an endpoint."""
        return await self._run(calls.get_webhook_delivery(webhook_id, delivery_id))

    async def replay_webhook_delivery(self, webhook_id: Id, delivery_id: Id) -> DeliveryOut:
        """Send a delivery again with a fresh series of attempts."""
        return await self._run(calls.replay_webhook_delivery(webhook_id, delivery_id))
