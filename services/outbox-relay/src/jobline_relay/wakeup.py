"""Wake the relay when the outbox gets rows: LISTEN (jobline.pg.listen), else poll.

The outbox's statement-level trigger notifies ``jobline_outbox`` per statement: with an
empty payload when a row is due now (wake up), and with the epoch of its earliest future row
when rows wait (:attr:`Wakeup.next_due`: an idle relay sleeps until exactly then, with no
query to ask).
PostgreSQL folds identical notifications of one transaction into one, so a 1,000-job batch
submit wakes each relay once. While the listener is down the relay polls; a NOTIFY missed
meanwhile costs at most one poll interval, never a message.
"""

from __future__ import annotations

import asyncio

from jobline.pg.listen import OUTBOX_CHANNEL, Listener

# Names the listening session in pg_stat_activity (for operators, and for tests that drop it).
APPLICATION_NAME = "jobline-relay-listen"


class Wakeup:
    """An event set by every due NOTIFY (and by :meth:`stop`); the relay waits on it."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self._event = asyncio.Event()
        # The earliest not-yet-due row announced since the relay last looked (epoch seconds).
        self.next_due: float | None = None
        self._listener = Listener(
            url,
            OUTBOX_CHANNEL,
            self._notified,
            self.set,
            application_name=APPLICATION_NAME,
            connect_timeout=connect_timeout,
        )

    @property
    def listening(self) -> bool:
        return self._listener.listening

    @property
    def sessions(self) -> int:
        return self._listener.sessions

    def _notified(self, payload: str) -> None:
        try:
            due = float(payload) if payload else None
        except ValueError:
            due = None
        if due is None:
            self._event.set()
        elif self.next_due is None or due < self.next_due:
            self.next_due = due

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
        self._listener.stop()
        self._event.set()

    async def run(self) -> None:
        await self._listener.run()
