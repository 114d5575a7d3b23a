"""The API keys part of :class:`~jobline.client.Client`: any tenant's keys (operator) and
the caller's own tenant's keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from jobline.api.keys import KeyCreated, KeyIn, KeyOut, OwnKeyIn, Scope
from jobline.client import _calls as calls
from jobline.client._calls import Id
from jobline.client._sync_base import SyncBase


class SyncKeys(SyncBase):
    """API keys (see :class:`~jobline.client.Client`)."""

    def create_key(
        self,
        tenant: str,
        scopes: Iterable[Scope | str],
        *,
        name: str = "cli",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        """A new key for ``tenant`` (operator: ``admin`` scope); the secret is in ``.key``."""
        return self._run(calls.create_key(calls.key_body(KeyIn, scopes, name, expires_at, tenant)))

    def list_keys(self, *, tenant: str | None = None) -> list[KeyOut]:
        """API keys of every tenant, or of ``tenant`` (operator), never their secrets."""
        return self._run(calls.list_keys(tenant=tenant)).keys

    def revoke_key(self, key_id: Id) -> KeyOut:
        """Revoke a key (operator); it stops working on the next request."""
        return self._run(calls.revoke_key(key_id))

    def create_own_key(
        self,
        scopes: Iterable[Scope | str],
        *,
        name: str = "cli",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        """A new key for the caller's tenant (needs ``POST /v1/keys``)."""
        return self._run(calls.create_own_key(calls.key_body(OwnKeyIn, scopes, name, expires_at)))

    def list_own_keys(self) -> list[KeyOut]:
        """The caller's tenant's keys (needs ``GET /v1/keys``)."""
        return self._run(calls.list_own_keys()).keys

    def revoke_own_key(self, key_id: Id) -> KeyOut:
        """Revoke one of the tenant's keys (needs ``DELETE /v1/keys/{id}``)."""
        return self._run(calls.revoke_own_key(key_id))
