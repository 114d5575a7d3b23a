"""Wake the relay when the outbox gets rows: LISTEN on a dedicated connection, else poll.

The outbox's statement-level trigger calls ``pg_notify('jobline_outbox', '')``; PostgreSQL
folds identical notifications of one transaction into one, so a 1,000-job batch submit
wakes each relay once. The listening connection is outside the engine's pool (a pooled
connection would be recycled and lose its LISTEN). When it drops, the relay keeps working
on its polling interval while this reconnects with backoff; a NOTIFY missed meanwhile
costs at most one poll interval, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import asyncpg

from jobline.core.backoff import BackoffKind, BackoffPolicy, delay_seconds
from jobline.pg.tables import OUTBOX_CHANNEL

log = logging.getLogger(__name__)

# Names the listening session in pg_stat_activity (for operators, and for tests that drop it).
APPLICATION_NAME = "jobline-relay-listen"
RECONNECT_BACKOFF = BackoffPolicy(BackoffKind.EXPONENTIAL_JITTER, 0.2, 5.0)


class Wakeup:
    """An event set by every NOTIFY (and by :meth:`stop`); the relay waits on it with a timeout."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.listening = False
        # LISTEN sessions opened so far: a reconnect shows as an increase even when the gap
        # between sessions is too short to observe `listening` go false.
        self.sessions = 0
        self._event = asyncio.Event()
        self._stopping = asyncio.Event()

    def clear(self) -> None:
        """Forget earlier wake-ups: call before a claim, so one arriving during it counts."""
        self._event.clear()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Sleep until a NOTIFY, :meth:`stop` or ``timeout`` seconds; True if woken."""
        if timeout <= 0:
            return self._event.is_set()
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        self._stopping.set()
        self._event.set()

    async def run(self) -> None:
        """Keep a LISTEN connection open until :meth:`stop`, reconnecting with backoff."""
        rng = random.Random()
        failures = 0
        while not self._stopping.is_set():
            try:
                await self._listen_until_dropped()
                failures = 0
            except Exception as exc:  # any failure of the listener: reconnect, never crash
                failures += 1
                log.warning("outbox listen connection unavailable: %s; polling meanwhile", exc)
            if self._stopping.is_set():
                return
            self._event.set()  # we may have missed a NOTIFY: look once now
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay_seconds(RECONNECT_BACKOFF, failures or 1, rng)):
                    await self._stopping.wait()

    async def _listen_until_dropped(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout,
            server_settings={"application_name": APPLICATION_NAME},
        )
        dropped = asyncio.Event()

        def on_notify(*_: Any) -> None:
            self._event.set()

        def on_terminate(*_: Any) -> None:
            dropped.set()

        conn.add_termination_listener(on_terminate)
        try:
            await conn.add_listener(OUTBOX_CHANNEL, on_notify)
            self.listening = True
            self.sessions += 1
            log.info("listening on %s", OUTBOX_CHANNEL)
            # Rows committed before the LISTEN took effect woke nobody: look once now.
            self._event.set()
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


async def _probe(conn: asyncpg.Connection, every: float = 5.0) -> None:
    """A half-open TCP connection never reports termination: ask the server now and then."""
    while True:
        await asyncio.sleep(every)
        await conn.fetchval("SELECT 1", timeout=every)
