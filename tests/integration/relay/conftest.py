"""Fixtures of the relay's integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobline.broker.kafka import make_producer


@pytest.fixture
async def producer(kafka_settings) -> AsyncIterator[Any]:
    """A started producer on the run's broker, for a Publisher under test."""
    producer = make_producer(kafka_settings)
    await producer.start()
    yield producer
    await producer.stop()
