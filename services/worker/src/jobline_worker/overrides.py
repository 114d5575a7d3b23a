"""Tenants' own limits of this worker's job types (``PUT /v1/job-types/{type}/limits``).

Read at start, before the first claim, and again every ``refresh_seconds`` (one small query:
the table holds a row per tenant and type that has one). The cache only decides whether a
job takes the gated claim at all: that claim reads the tenant's limits afresh in its own
transaction (jobline_worker.gating). So a type that becomes limited is governed within
``refresh_seconds``, and a changed limit applies to every claim from the moment it commits
(the relay releases the jobs held under the old ones: jobline.pg.typelimits.forget_gates).
A failed read keeps the last known overrides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

from jobline.core import limits
from jobline.pg import typelimits
from jobline.pg.db import Database
from jobline_worker.registry import JobSpec

log = logging.getLogger("jobline.worker")


class LimitOverrides:
    """The limits each tenant's jobs of a type start under, kept fresh in the background."""

    def __init__(self, db: Database, types: Collection[str], refresh_seconds: float) -> None:
        self.db = db
        self.types = sorted(types)
        self.refresh_seconds = refresh_seconds
        self._by_key: dict[tuple[str, str], limits.Override] = {}

    def limits(self, spec: JobSpec, tenant: str) -> tuple[limits.Limit, ...]:
        return limits.effective(spec.start_limits, self._by_key.get((tenant, spec.type)))

    async def refresh(self) -> None:
        async with self.db.connection() as conn:
            self._by_key = await typelimits.for_types(conn, self.types)

    async def run(self) -> None:
        """Refresh every ``refresh_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be down: keep the last known
                log.warning("reading tenants' limits failed: %s: %s", type(exc).__name__, exc)
