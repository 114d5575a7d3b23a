"""Schedules against this run's PostgreSQL: the gateway in-process, the scheduler in-process."""

from __future__ import annotations

from typing import Any

import pytest

from jobline.pg.db import Database
from tests.integration.gateway.conftest import (  # noqa: F401  (fixtures, re-exported)
    bearer,
    client,
    gateway_settings,
    make_client,
)
from tests.integration.schedules.helpers import db_now, delete_schedules_since


def schedule_body(**changes: Any) -> dict[str, Any]:
    """A valid POST /v1/schedules body that fires rarely (02:30 each Jan 1st, Berlin)."""
    body: dict[str, Any] = {
        "name": "nightly-report",
        "cron": "30 2 1 1 *",
        "timezone": "Europe/Berlin",
        "job": {"type": "report.build", "payload": {"kind": "daily"}},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture(autouse=True)
async def _no_schedule_left_behind(db: Database):
    """Schedules created by a test are deleted after it: later tests' relays must not fire them."""
    started = await db_now(db)
    yield
    await delete_schedules_since(db, started)
