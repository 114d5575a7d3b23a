"""The worker's bound on in-flight work: one slot per message from fetch until it is done."""

from __future__ import annotations

import asyncio
import contextlib

from jobline_worker import metrics


class Slots:
    """``size`` slots shared by every queue's fetch loop; freeing one wakes them."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._freed = asyncio.Event()

    @property
    def free(self) -> int:
        return self.size - self.used

    def take(self) -> bool:
        """Take a slot if one is free."""
        if self.used >= self.size:
            return False
        self.used += 1
        metrics.IN_FLIGHT.set(self.used)
        return True

    def release(self, count: int = 1) -> None:
        if count <= 0:
            return
        self.used -= count
        metrics.IN_FLIGHT.set(self.used)
        self._freed.set()

    async def wait_for_free(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until a slot is freed (or ``timeout``): the caller checks again either way."""
        self._freed.clear()
        if self.free > 0:
            return
        await self._wait(timeout)

    async def wait_released(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until some slot is released (or ``timeout``)."""
        self._freed.clear()
        await self._wait(timeout)

    async def _wait(self, timeout: float) -> None:  # noqa: ASYNC109
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as the
        # event is set, and stop() does exactly that (wake, then cancel the fetch loops), which
        # left a loop running and the drain waiting for it forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._freed.wait()

    def wake(self) -> None:
        """Wake every waiter (on stop)."""
        self._freed.set()
