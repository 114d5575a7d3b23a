"""The gateway's in-memory copies of API keys and job-type policies, dropped on any change.

Reading the key row on every request cost a round trip and most of a submission's database
work. Instead each gateway keeps the rows it has read, and ``api_keys`` and
``job_type_policies`` notify ``jobline_catalog`` on every change (migration 0003): the copies
of that table are dropped at once, in every gateway. While the LISTEN session is down
nothing is served from memory (every lookup reads the row, as before), and when it comes
back everything is dropped, since a notification may have been missed.

A revocation is therefore seen by every gateway about as soon as it commits. For the writes
it must never miss, a submission checks the key again in the very statement that inserts
the jobs (``insert_jobs``'s ``api_key_id``), so a revoked key cannot submit even inside the
moment a notification takes to arrive; and a gateway that revokes a key drops its own copy
before it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from typing import Final
from uuid import UUID

from jobline.core.backoff import BackoffPolicy
from jobline.core.jobdefaults import TypePolicy
from jobline.pg import keystore
from jobline.pg.db import Database
from jobline.pg.listen import CATALOG_CHANNEL, Listener
from jobline.pg.queries import SQL

log = logging.getLogger(__name__)

APPLICATION_NAME: Final = "jobline-gateway-catalog"
# Tables whose changes concern only the subscribers (keys and policies stay).
SUBSCRIBED_TABLES: Final = frozenset({"queues", "job_types"})
# Bounds the memory a flood of distinct keys or tenants can take; a full map is emptied.
MAX_ENTRIES: Final = 100_000


class Catalog:
    """Cached key rows by prefix and type policies by tenant, kept honest by NOTIFY."""

    def __init__(self, db: Database, *, connect_timeout: float = 5.0) -> None:
        self.db = db
        self._keys: dict[str, keystore.StoredKey] = {}
        self._policies: dict[str, dict[str, TypePolicy | None]] = {}
        # Bumped by every change heard: a row read before a change must not be stored after
        # the change dropped the copies (it would outlive the change).
        self._generation = 0
        # Other copies kept honest by the same NOTIFY (the registry's): called with the
        # table that changed, or None when anything may have.
        self.subscribers: list[Callable[[str | None], None]] = []
        self.listener = Listener(
            db.url,
            CATALOG_CHANNEL,
            self._changed,
            self.clear,
            application_name=APPLICATION_NAME,
            connect_timeout=connect_timeout,
        )

    @property
    def live(self) -> bool:
        """Whether copies are served (only while changes are being heard)."""
        return self.listener.listening

    def clear(self) -> None:
        self._generation += 1
        self._keys.clear()
        self._policies.clear()
        for subscriber in self.subscribers:
            subscriber(None)

    def _changed(self, table: str) -> None:
        self._generation += 1
        if table == "api_keys":
            self._keys.clear()
        elif table == "job_type_policies":
            self._policies.clear()
        elif table in SUBSCRIBED_TABLES:
            for subscriber in self.subscribers:
                subscriber(table)
        else:
            self.clear()

    def forget_key(self, key_id: UUID) -> None:
        """Drop this gateway's copy of a key (it revoked it, or the database refused it)."""
        self._generation += 1
        for prefix, stored in list(self._keys.items()):
            if stored.record.id == key_id:
                del self._keys[prefix]

    async def key(self, prefix: str) -> keystore.StoredKey | None:
        """The key row with this prefix, from memory while live, else from the database."""
        if self.live and (stored := self._keys.get(prefix)) is not None:
            return stored
        generation = self._generation
        async with self.db.connection() as conn:
            stored = await keystore.by_prefix(conn, prefix)
        if stored is not None and self.live and generation == self._generation:
            if len(self._keys) >= MAX_ENTRIES:
                self._keys.clear()
            self._keys[prefix] = stored
        return stored

    async def policies(self, tenant_id: str, types: Collection[str]) -> dict[str, TypePolicy]:
        """The tenant's stored policies for ``types`` (types without one are left out)."""
        known = self._policies.get(tenant_id, {}) if self.live else {}
        missing = [t for t in types if t not in known]
        if missing:
            generation = self._generation
            async with self.db.connection() as conn:
                rows = await SQL.fetch(conn, "type_policies", tenant_id=tenant_id, types=missing)
            found: dict[str, TypePolicy | None] = dict.fromkeys(missing)
            for r in rows:
                backoff = BackoffPolicy.from_dict(r["backoff"]) if r["backoff"] else None
                found[r["type"]] = TypePolicy(r["max_attempts"], backoff)
            if self.live and generation == self._generation:
                if len(self._policies) >= MAX_ENTRIES:
                    self._policies.clear()
                self._policies.setdefault(tenant_id, {}).update(found)
            known = {**known, **found}
        return {t: p for t in types if (p := known.get(t)) is not None}
