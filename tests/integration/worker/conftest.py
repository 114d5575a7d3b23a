"""The worker tests' settings, the in-process relay, and the in-process gateway's fixtures
(for the tests of what a worker's start tells it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from jobline_relay.relay import Relay
from jobline_relay.settings import Settings as RelaySettings
from jobline_worker import Worker
from jobline_worker.runtime import Runtime
from jobline_worker.settings import Settings
from tests.integration.gateway.conftest import (  # noqa: F401  (fixtures, re-exported)
    gateway_settings,
    make_client,
)


def worker_settings(database_url, kafka_settings, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap": kafka_settings.kafka_bootstrap,
        "topic_prefix": kafka_settings.topic_prefix,
        "topic_partitions": 2,
        "worker_lease_seconds": 1.5,
        "worker_shutdown_grace_seconds": 1.0,
        "worker_commit_interval_seconds": 0.1,
        "worker_kafka_session_timeout_ms": 1000,
        "worker_kafka_heartbeat_interval_ms": 200,
    }
    values.update(changes)
    return Settings(**values)


def relay_settings(database_url, kafka_settings, **changes: Any) -> RelaySettings:
    """The real outbox relay's settings for the tests: its lease rescuer runs once at start
    (leases the tests leave behind are set far ahead, ``_not_rescuable``), and it heals
    nothing younger than a day."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "kafka_bootstrap": kafka_settings.kafka_bootstrap,
        "topic_prefix": kafka_settings.topic_prefix,
        "topic_partitions": 2,
        "relay_poll_interval_seconds": 0.1,
        "lease_rescue_interval_seconds": 600,
        # Other tests' jobs left queued in the session database are not this relay's to heal.
        "relay_heal_after_seconds": 86_400,
        "scheduler_enabled": False,
    }
    values.update(changes)
    return RelaySettings(**values)


@pytest.fixture
async def relay(db, database_url, kafka_settings):
    """The real outbox relay, in-process (publishing every test's rows; they use their own
    queues)."""
    running = Relay(relay_settings(database_url, kafka_settings), db)
    running.start()
    yield running
    await running.stop()


@pytest.fixture
def run_workers(database_url, kafka_settings):
    """Start ``count`` worker runtimes of ``app`` on ``queue`` (stopped on leaving)."""

    @asynccontextmanager
    async def start(
        app: Worker, queue: str, count: int, concurrency: int, **changes: Any
    ) -> AsyncIterator[list[Runtime]]:
        settings = worker_settings(
            database_url, kafka_settings, **{"worker_fetch_max_wait_ms": 5, **changes}
        )
        async with AsyncExitStack() as stack:
            runtimes = []
            for _ in range(count):
                runtime = Runtime(
                    settings,
                    app,
                    [queue],
                    concurrency,
                    consumer_options=settings.consumer_options(),
                )
                await runtime.start()
                stack.push_async_callback(runtime.stop)
                runtimes.append(runtime)
            yield runtimes

    return start
