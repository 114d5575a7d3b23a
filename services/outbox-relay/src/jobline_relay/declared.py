"""The relay's view of the declared queues: only their topics are ever published to.

A work message for a queue nobody declared (written by a gateway of the previous release, or
by hand) is not published, so no topic is created for it: its row goes back into the outbox,
due again after ``hold_seconds``, and is published once the queue is declared. Nothing is
lost and nothing stalls: the rest of the batch flows.

The declarations are read with the batch's own connection: again after ``ttl`` seconds (a
declared queue's partition count may change) and at once on a name not known yet (declared
a moment ago, perhaps), at most once per batch.
"""

from __future__ import annotations

import time

from jobline.pg import registry
from jobline.pg.db import Conn


class DeclaredQueues:
    """Declared queue names and their topics' partition counts (None: the default)."""

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self._partitions: dict[str, int | None] = {}
        self._read_at = float("-inf")

    async def lookup(self, conn: Conn, queues: set[str]) -> dict[str, int | None]:
        """The partitions of those of ``queues`` that are declared (the others are absent)."""
        stale = time.monotonic() - self._read_at >= self.ttl
        if stale or not queues <= self._partitions.keys():
            self._read_at = time.monotonic()
            self._partitions = {
                q.declaration.name: q.declaration.partitions
                for q in await registry.load_queues(conn)
            }
        return {q: self._partitions[q] for q in queues if q in self._partitions}
