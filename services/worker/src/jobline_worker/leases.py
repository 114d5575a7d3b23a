"""The lease keeper: renews the leases of every attempt this worker runs, in one statement.

Every third of the lease, all running attempts are renewed together; an attempt whose lease
is no longer ours (it expired and the relay re-queued the job) is stopped and its outcome
dropped, and one whose cancellation was requested is stopped and recorded as cancelled.
A handler's context talks to the keeper (``ctx.heartbeat()`` renews its lease at once,
``ctx.progress()`` stores progress), never to the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline_worker.outcomes import StopReason

log = logging.getLogger("jobline.worker")

Stop = Callable[[UUID, StopReason], None]


class LeaseKeeper:
    """The leases of this worker's running attempts (job id -> attempt)."""

    def __init__(self, db: Database, worker_id: str, lease_seconds: float, stop: Stop) -> None:
        self.db = db
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self._stop = stop
        self.held: dict[UUID, int] = {}

    def hold(self, job_id: UUID, attempt: int) -> None:
        self.held[job_id] = attempt

    def release(self, job_id: UUID) -> None:
        self.held.pop(job_id, None)

    async def run(self) -> None:
        """Renew every held lease each third of the lease, until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.renew(dict(self.held))

    async def renew(self, attempts: dict[UUID, int]) -> dict[UUID, bool]:
        """Renew ``attempts`` now; stop the handlers of those lost or asked to cancel."""
        if not attempts:
            return {}
        try:
            async with self.db.connection() as conn:
                ours = await jobstore.renew_leases(
                    conn, self.worker_id, attempts, self.lease_seconds
                )
        except Exception as exc:  # the leases may still hold; try again next round
            log.warning("lease renewal failed: %s", exc)
            return dict.fromkeys(attempts, False)
        for job_id, attempt in attempts.items():
            # An attempt that finished meanwhile is no longer renewed either: not "lost". The
            # stop is a no-op unless the attempt is still running here.
            if job_id not in ours and self.held.get(job_id) == attempt:
                self._stop(job_id, StopReason.LEASE_LOST)
            elif ours.get(job_id):
                self._stop(job_id, StopReason.CANCEL_REQUESTED)
        return ours

    async def heartbeat(self, job_id: UUID) -> bool:
        """Renew one lease now (a handler's ``ctx.heartbeat()``); False if it is lost."""
        attempt = self.held.get(job_id)
        if attempt is None:
            return False
        return job_id in await self.renew({job_id: attempt})

    async def progress(self, job_id: UUID, fraction: float, message: str | None) -> None:
        """Store a running attempt's progress in its job's metadata."""
        attempt = self.held.get(job_id)
        if attempt is None:
            return
        report = {
            "fraction": fraction,
            "message": message,
            "attempt": attempt,
            "at": datetime.now(UTC).isoformat(),
        }
        async with self.db.connection() as conn:
            await jobstore.record_progress(conn, job_id, attempt, self.worker_id, report)
