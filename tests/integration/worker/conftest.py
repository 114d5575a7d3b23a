"""The worker tests' settings, the in-process relay, and the in-process gateway's fixtures
(for the tests of what a worker's start tells it)."""

from __future__ import annotations

from typing import Any

import pytest

from jobline_relay.relay import Relay
from jobline_relay.settings import Settings as RelaySettings
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


@pytest.fixture
async def relay(db, database_url, kafka_settings):
    """The real outbox relay, in-process (publishing every test's rows; they use their own
    queues). Its lease rescuer runs once at start; leases the tests leave behind are set far
    ahead (``_not_rescuable``); it heals nothing younger than a day."""
    settings = RelaySettings(
        database_url=database_url,
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=kafka_settings.topic_prefix,
        topic_partitions=2,
        relay_poll_interval_seconds=0.1,
        lease_rescue_interval_seconds=600,
        # Other tests' jobs left queued in the session database are not this relay's to heal.
        relay_heal_after_seconds=86_400,
        scheduler_enabled=False,
    )
    running = Relay(settings, db)
    running.start()
    yield running
    await running.stop()
