"""Webhooks against this run's PostgreSQL: the gateway in-process, the relay's fan-out and
delivery loop in-process, and a receiver process that verifies signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from jobline.pg.db import Database
from jobline_relay.settings import Settings as RelaySettings
from tests.integration.gateway.conftest import (  # noqa: F401  (fixtures, re-exported)
    bearer,
    client,
    gateway_settings,
    make_client,
)
from tests.webhook_receiver import Receiver

# Retries a few tens of milliseconds apart, so a test sees a delivery through quickly.
FAST_RETRIES = {
    "webhook_retry_base_seconds": 0.02,
    "webhook_retry_max_seconds": 0.05,
    "webhook_max_attempts": 4,
    "webhook_disable_after": 2,
    "webhook_timeout_seconds": 5.0,
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """The receiver process (one per module)."""
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture
def relay_settings(database_url, kafka_bootstrap, topic_prefix) -> Callable[..., RelaySettings]:
    def make(**overrides: Any) -> RelaySettings:
        base = {
            "database_url": database_url,
            "kafka_bootstrap": kafka_bootstrap,
            "topic_prefix": topic_prefix,
            **FAST_RETRIES,
        }
        return RelaySettings(**{**base, **overrides})

    return make


@pytest.fixture(autouse=True)
async def _no_endpoint_left_behind(db: Database) -> AsyncIterator[None]:
    """No endpoint of another test is there (a delivery loop claims the due deliveries of
    every tenant: other tests' leftovers to receivers long gone, each waiting out its
    timeout, kept these tests' own from being reached), and the ones a test made go
    afterwards (with their deliveries): later relays of the session must not retry them."""
    async with db.connection() as conn:
        await conn.execute("DELETE FROM webhook_endpoints")
        started = await conn.fetchval("SELECT clock_timestamp()")
    yield
    async with db.connection() as conn:
        await conn.execute("DELETE FROM webhook_endpoints WHERE created_at >= $1", started)
