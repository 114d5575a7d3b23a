"""The analyzer purges its own rows: seen event ids, rollups, per-job history, findings, and
the checkpoints of series gone quiet, each after its own retention (settings).

Every ``analyzer_retention_interval_seconds`` a round drains each table in small batches
(:class:`jobline.pg.purge.Purger`: one short transaction per batch, adaptive size, a time
budget per table) with the statements of :mod:`jobline_analyzer.store.retention`. Replicas
share the work safely: a batch takes the table's advisory lock for its transaction, or skips.
The cutoffs come from this process's clock: they are days long, so skew does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.core.retention import BatchLimits, cutoff
from jobline.pg import engine as db
from jobline.pg.purge import Counts, Purge, Purger
from jobline_analyzer.settings import Settings
from jobline_analyzer.store import retention as store

log = logging.getLogger("jobline.analyzer.retention")

ROUND_BUDGET_SECONDS = 10.0
PAUSE_SECONDS = 0.05


class AnalyzerRetention:
    """Purge rounds over the analyzer's tables until stopped."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        size = settings.analyzer_retention_batch_size
        self.purger = Purger(
            BatchLimits(initial=size, minimum=min(10, size), maximum=max(size, size * 5)),
            round_budget_seconds=ROUND_BUDGET_SECONDS,
            pause_seconds=PAUSE_SECONDS,
        )

    def keep(self) -> dict[str, timedelta]:
        """How long each table's rows are kept."""
        s = self.settings
        return {
            "analyzer_seen_events": timedelta(days=s.analyzer_seen_retention_days),
            "analyzer_rollups": timedelta(days=s.analyzer_rollup_retention_days),
            "analyzer_error_rollups": timedelta(days=s.analyzer_rollup_retention_days),
            "analyzer_jobs": timedelta(days=s.analyzer_job_retention_days),
            "analyzer_findings": timedelta(days=s.analyzer_finding_retention_days),
            "analyzer_detector_state": timedelta(days=s.analyzer_idle_series_retention_days),
        }

    def purges(self) -> list[Purge]:
        """This round's purges, with cutoffs taken now."""
        now = self.clock()
        return [self._purge(table, cutoff(now, keep)) for table, keep in self.keep().items()]

    def _purge(self, table: str, before: datetime) -> Purge:
        async def batch(limit: int) -> Counts | None:
            async with db.transaction(self.engine) as conn:
                if not await store.try_lock(conn, table):
                    return None
                if table == "analyzer_jobs":
                    return await store.purge_jobs(conn, before, limit)
                return {table: await store.purge_rows(conn, table, before, limit)}

        return Purge(table, batch)

    async def round(self, stop: asyncio.Event | None = None) -> Counts:
        """One round over every table; a failure is logged and the next round tries again."""
        try:
            purged = await self.purger.round(self.purges(), stop)
        except Exception as exc:  # the database may be down
            log.warning("retention round failed: %s: %s", type(exc).__name__, exc)
            return {}
        if any(purged.values()):
            log.info("retention purged %s", purged, extra={"purged": purged})
        return purged

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds every ``analyzer_retention_interval_seconds`` until ``stop`` is set."""
        while not stop.is_set():
            await self.round(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), self.settings.analyzer_retention_interval_seconds
                )
