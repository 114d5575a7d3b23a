"""LISTEN on a dedicated connection, reconnecting with backoff, for as long as asked.

The connection is outside any pool (a pooled connection would be recycled and lose its
LISTEN). ``on_notify(payload)`` runs for each notification; ``on_gap()`` runs whenever a
notification may have been missed (before each session starts listening, and after one
drops), so the user can look once instead of waiting for the next one. A half-open TCP
connection never reports termination, so the session is probed now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from jobline.core.backoff import BackoffKind, BackoffPolicy, delay_seconds

log = logging.getLogger(__name__)

# The channels Jobline's triggers notify (migrations 0001 and 0003).
OUTBOX_CHANNEL = "jobline_outbox"  # rows inserted: "" (due now) and/or the next due epoch
CATALOG_CHANNEL = "jobline_catalog"  # api_keys or job_type_policies changed; payload: table

RECONNECT_BACKOFF = BackoffPolicy(BackoffKind.EXPONENTIAL_JITTER, 0.2, 5.0)
PROBE_SECONDS = 5.0


class Listener:
    """Keeps one LISTEN session on ``channel`` open until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_notify: Callable[[str], None],
        on_gap: Callable[[], None],
        *,
        application_name: str,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.channel = channel
        self.on_notify = on_notify
        self.on_gap = on_gap
        self.application_name = application_name
        self.connect_timeout = connect_timeout
        self.listening = False
        # Sessions opened so far: a reconnect shows as an increase even when the gap between
        # sessions is too short to observe `listening` go false.
        self.sessions = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Listen until :meth:`stop`, reconnecting with backoff; never raises."""
        rng = random.Random()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._listen_until_dropped()
                failures = 0
            except Exception as exc:  # any failure of the listener: reconnect, never crash
                failures += 1
                log.warning("LISTEN %s unavailable: %s", self.channel, exc)
            if self._stopping.is_set():
                return
            self.on_gap()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_seconds(RECONNECT_BACKOFF, failures or 1, rng)):
                    await self._stopping.wait()

    async def _listen_until_dropped(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            server_settings={"application_name": self.application_name},
        )
        dropped = asyncio.Event()

        def notified(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            self.on_notify(payload)

        conn.add_termination_listener(lambda *_: dropped.set())
        try:
            await conn.add_listener(self.channel, notified)
            self.listening = True
            self.sessions += 1
            log.info("listening on %s", self.channel)
            self.on_gap()  # changes committed before the LISTEN took effect notified nobody
            stop = asyncio.ensure_future(self._stopping.wait())
            drop = asyncio.ensure_future(dropped.wait())
            probe = asyncio.ensure_future(_probe(conn))
            try:
                await asyncio.wait({stop, drop, probe}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (stop, drop, probe):
                    task.cancel()
                await asyncio.gather(stop, drop, probe, return_exceptions=True)
            if probe.done() and not probe.cancelled() and (error := probe.exception()):
                raise error
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=1)
        if not self._stopping.is_set():
            raise ConnectionError("listen connection closed")


async def _probe(conn: asyncpg.Connection) -> None:
    while True:
        await asyncio.sleep(PROBE_SECONDS)
        await conn.fetchval("SELECT 1", timeout=PROBE_SECONDS)
