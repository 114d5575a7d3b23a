"""Housekeeping: the retention purge of finished jobs, their attempts and expired keys.

The relay is the platform's housekeeper (it already rescues leases and fires schedules), and
any number of replicas run this task: each batch takes the table's transaction-level advisory
lock first (one purger per table at a time) and deletes with ``SKIP LOCKED`` (rows anyone
holds are left for later). What is due is decided by the rows themselves (``purge_after``,
``expires_at``, compared with the database's ``now()``), so relays with skewed clocks agree.
The statements and the batching are :mod:`jobline.pg.purge`; this module only schedules rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jobline.pg import purge
from jobline.pg.db import Database
from jobline_relay.settings import Settings

log = logging.getLogger(__name__)


class Retention:
    """Runs a purge round every ``retention_interval_seconds`` until stopped."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.purger = purge.Purger(
            settings.retention_limits,
            round_budget_seconds=settings.retention_round_budget_seconds,
            pause_seconds=settings.retention_pause_seconds,
        )
        self.purges = purge.relay_purges(db)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="relay-retention")

    async def stop(self) -> None:
        """Let the batch in flight commit, then return (a round stops between batches)."""
        self._stop.set()
        if self._task is not None:
            try:
                async with asyncio.timeout(self.settings.relay_shutdown_grace_seconds):
                    await asyncio.shield(self._task)
            except TimeoutError:
                log.warning("retention did not stop in time: cancelled (rolled back)")
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def run(self) -> None:
        while not self._stop.is_set():
            await self.round()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.retention_interval_seconds):
                    await self._stop.wait()

    async def round(self) -> dict[str, int]:
        """One purge round over every table; failures are logged and retried next round."""
        try:
            purged = await self.purger.round(self.purges, self._stop)
        except Exception as exc:  # the database may be down: the next round tries again
            log.warning("retention round failed: %s: %s", type(exc).__name__, exc)
            return {}
        if any(purged.values()):
            log.info("retention purged %s", purged, extra={"purged": purged})
        return purged
