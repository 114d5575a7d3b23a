"""The gateway's copy of the declared queues and registered job types.

Both tables are small and read whole, so a submission checks its type, queue and payload
against memory: no PostgreSQL round trip on the submit path. A copy is dropped when the
catalog's NOTIFY says a row of ``queues`` or ``job_types`` changed (or the LISTEN session had
a gap), and is in any case re-read after ``ttl`` seconds, which bounds how stale it can be
if a notification is lost.

A miss (an unknown type or queue) re-reads once before refusing: :meth:`RegistryCache.since`
returns a copy read after the request began, so a type registered a moment before a
submission is never refused because this gateway had not heard of it yet. Concurrent
re-reads share one query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from jobline.core.payloads import InvalidSchema, PayloadSchema
from jobline.core.registry import Registry
from jobline.pg import registry as pg_registry
from jobline.pg.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One reading of the registry, with the payload schemas compiled."""

    stored: pg_registry.Stored
    registry: Registry
    schemas: dict[str, PayloadSchema]
    started: float = field(compare=False)  # monotonic time the read began

    @classmethod
    def of(cls, stored: pg_registry.Stored, started: float) -> Snapshot:
        schemas = {}
        for row in stored.types:
            schema = row.record.payload_schema
            if schema is None:
                continue
            try:
                schemas[row.record.name] = PayloadSchema(schema)
            except InvalidSchema as exc:
                # Writers check schemas; one that is unusable anyway is not enforced here
                # (the worker still validates with the handler's model) and is reported.
                log.error("job type %r has an unusable payload schema: %s", row.record.name, exc)
        return cls(stored, stored.registry(), schemas, started)


class RegistryCache:
    """The registry as this gateway last read it; see the module's docstring."""

    def __init__(self, db: Database, *, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        self._current: Snapshot | None = None
        self._loading: tuple[float, asyncio.Future[Snapshot]] | None = None
        # Bumped by every change heard: a read that began before a change must not be kept.
        self._generation = 0
        self.reads = 0  # for tests and the curious: how often the tables were read

    def changed(self, table: str | None) -> None:
        """The catalog's change hook: ``table`` changed (None: anything may have)."""
        if table is None or table in ("queues", "job_types"):
            self._generation += 1
            self._current = None

    async def get(self) -> Snapshot:
        """The current copy; read again when dropped or older than ``ttl``."""
        now = time.monotonic()
        current = self._current
        if current is not None and now - current.started < self.ttl:
            return current
        return await self.since(now)

    async def since(self, started: float) -> Snapshot:
        """A copy whose read began at or after ``started`` (monotonic), reading if needed."""
        current = self._current
        if current is not None and current.started >= started:
            return current
        loading = self._loading
        if loading is None or loading[0] < started:
            begun = time.monotonic()
            loading = (begun, asyncio.ensure_future(self._read(begun)))
            loading[1].add_done_callback(_retrieve)
            self._loading = loading
        # shield: one caller's cancellation (a client gone) must not fail the others.
        return await asyncio.shield(loading[1])

    async def _read(self, started: float) -> Snapshot:
        generation = self._generation
        try:
            async with self.db.connection() as conn:
                stored = await pg_registry.load(conn)
        finally:
            if self._loading is not None and self._loading[0] == started:
                self._loading = None
        self.reads += 1
        snapshot = Snapshot.of(stored, started)
        if generation == self._generation:
            self._current = snapshot
        return snapshot


def _retrieve(future: asyncio.Future[Snapshot]) -> None:
    # Every waiter may have gone (cancelled): the read's error is then nobody's to report.
    if not future.cancelled():
        future.exception()
