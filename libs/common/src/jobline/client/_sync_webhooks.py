"""The webhooks part of :class:`~jobline.client.Client`: endpoints, their secrets, the
delivery log and replay."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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
from jobline.client._calls import Id
from jobline.client._sync_base import SyncBase


class SyncWebhooks(SyncBase):
    """Webhooks (see :class:`~jobline.client.Client`)."""

    def create_webhook(
        self, url: str, event_types: Iterable[str], *, description: str | None = None
    ) -> WebhookCreated:
        """A new endpoint; its signing secret (``.secret``) is shown only in this answer."""
        return self._run(calls.create_webhook(calls.webhook_body(url, event_types, description)))

    def list_webhooks(self, *, limit: int | None = None, cursor: str | None = None) -> WebhookPage:
        """One page of the tenant's endpoints, oldest first."""
        return self._run(calls.list_webhooks(limit=limit, cursor=cursor))

    def iter_webhooks(self, *, page_size: int | None = None) -> Iterator[WebhookOut]:
        """Every endpoint of the tenant, oldest first."""

        def fetch(cursor: str | None) -> WebhookPage:
            return self.list_webhooks(limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.webhooks)

    def get_webhook(self, webhook_id: Id) -> WebhookOut:
        """An endpoint by id (never its secret)."""
        return self._run(calls.get_webhook(webhook_id))

    def update_webhook(
        self, webhook_id: Id, changes: WebhookPatch | Mapping[str, Any]
    ) -> WebhookOut:
        """Change an endpoint's URL, event types or description, or enable or disable it."""
        return self._run(calls.update_webhook(webhook_id, changes))

    def delete_webhook(self, webhook_id: Id) -> None:
        """Delete an endpoint and its delivery log."""
        self._run(calls.delete_webhook(webhook_id))

    def rotate_webhook_secret(self, webhook_id: Id) -> WebhookCreated:
        """A new signing secret (the previous one signs too for a grace period)."""
        return self._run(calls.rotate_webhook_secret(webhook_id))

    def webhook_deliveries(
        self,
        webhook_id: Id,
        *,
        status: DeliveryStatus | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> DeliveryPage:
        """One page of an endpoint's delivery log, newest first."""
        return self._run(
            calls.list_webhook_deliveries(webhook_id, status=status, limit=limit, cursor=cursor)
        )

    def iter_webhook_deliveries(
        self,
        webhook_id: Id,
        *,
        status: DeliveryStatus | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[DeliveryOut]:
        """Every delivery of an endpoint, newest first."""

        def fetch(cursor: str | None) -> DeliveryPage:
            return self.webhook_deliveries(
                webhook_id, status=status, limit=page_size, cursor=cursor
            )

        return pagination.iterate(fetch, lambda page: page.deliveries)

    def get_webhook_delivery(self, webhook_id: Id, delivery_id: Id) -> DeliveryOut:
        """One delivery of an endpoint."""
        return self._run(calls.get_webhook_delivery(webhook_id, delivery_id))

    def replay_webhook_delivery(self, webhook_id: Id, delivery_id: Id) -> DeliveryOut:
        """Send a delivery again with a fresh series of attempts."""
        return self._run(calls.replay_webhook_delivery(webhook_id, delivery_id))
