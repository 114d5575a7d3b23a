"""The gateway's registry copy: reads shared, reads before a change not kept (no servers:
the table read is replaced by a stub)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import Any

import pytest

from jobline.pg import registry as pg_registry
from jobline_gateway.registry_cache import RegistryCache


class FakeDb:
    @asynccontextmanager
    async def connection(self) -> Any:
        yield None


@pytest.fixture
def reads(monkeypatch) -> dict[str, Any]:
    state: dict[str, Any] = {"count": 0, "gate": None, "reading": asyncio.Event()}

    async def load(_conn: Any) -> pg_registry.Stored:
        state["count"] += 1
        state["reading"].set()
        if state["gate"] is not None:
            await state["gate"].wait()
        return pg_registry.Stored([], [])

    monkeypatch.setattr(pg_registry, "load", load)
    return state


async def test_a_copy_is_served_until_dropped_or_old(reads):
    cache = RegistryCache(FakeDb(), ttl=60)  # type: ignore[arg-type]
    first = await cache.get()
    assert await cache.get() is first
    assert reads["count"] == 1
    cache.changed("api_keys")  # not the registry's
    assert await cache.get() is first
    cache.changed("job_types")
    assert await cache.get() is not first
    assert reads["count"] == 2
    old = RegistryCache(FakeDb(), ttl=0.001)  # type: ignore[arg-type]
    await old.get()
    await asyncio.sleep(0.01)
    await old.get()
    assert reads["count"] == 4


async def test_concurrent_misses_share_one_read_and_a_read_before_a_change_is_not_kept(reads):
    cache = RegistryCache(FakeDb(), ttl=60)  # type: ignore[arg-type]
    reads["gate"] = asyncio.Event()
    started = time.monotonic()
    waiters = [asyncio.create_task(cache.since(started)) for _ in range(10)]
    await reads["reading"].wait()
    cache.changed("queues")  # while the read is in flight
    reads["gate"].set()
    snapshots = await asyncio.gather(*waiters)
    assert reads["count"] == 1
    assert all(s is snapshots[0] for s in snapshots)
    assert cache._current is None  # read before the change: served once, not kept
    reads["gate"] = None
    assert await cache.since(started) is not snapshots[0]
    assert reads["count"] == 2
