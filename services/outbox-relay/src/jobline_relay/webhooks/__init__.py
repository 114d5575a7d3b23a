"""Webhooks in the relay: lifecycle events become signed HTTP deliveries.

- :mod:`.fanout`: consumes ``<prefix>.events`` in its own group and writes one delivery row
  per matching enabled endpoint of the event's tenant (idempotent per endpoint and event),
  committing offsets only after the rows commit: at least once from the topic to the table.
- :mod:`.delivery`: claims due rows (``FOR UPDATE SKIP LOCKED``, with a lease), POSTs them
  (:mod:`.sender`) and records each result: success, a retry after backoff, or failure for
  good, which counts towards disabling the endpoint. Finished rows are purged after their
  retention.

:class:`Webhooks` runs both beside the relay's other loops; any number of replicas may.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from jobline.pg.db import Database
from jobline_relay.settings import Settings
from jobline_relay.webhooks.delivery import Deliverer
from jobline_relay.webhooks.fanout import Fanout

log = logging.getLogger(__name__)


class Webhooks:
    """The fan-out and the delivery loop of one relay replica."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.deliverer = Deliverer(settings, db)
        self.fanout = Fanout(settings, db, wake=self.deliverer.wake)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.fanout.run(self._stop), name="relay-webhook-fanout"),
            asyncio.create_task(self.deliverer.run(self._stop), name="relay-webhook-delivery"),
        ]

    async def stop(self) -> None:
        """Let attempts in flight record their results, then return. An attempt cut off by
        the grace period is delivered again after its lease (at least once)."""
        self._stop.set()
        self.deliverer.wake()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(
            self._tasks, timeout=self.settings.relay_shutdown_grace_seconds
        )
        for task in pending:
            log.warning("webhook task %s did not stop in time: cancelled", task.get_name())
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []


__all__ = ["Webhooks"]
