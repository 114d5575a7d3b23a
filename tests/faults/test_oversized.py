"""No poison row: a handler error of 2 MB stops nothing.

The worker caps the message it stores and publishes (``JOBLINE_WORKER_ERROR_MAX_BYTES``,
8 KiB by default, the cut marked). With the cap raised above what the relay may send, the
events and dead letter carrying the error are too large for the broker: the relay sets those
messages aside (``outbox_set_aside``, ``jobline_relay_messages_set_aside_total``) and every
other message flows.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any
from uuid import UUID

from tests.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    Api,
    metric_value,
    start_worker,
    wait_states,
)

TWO_MB = 2_000_000
ONE_TRY = {"max_attempts": 2, "backoff": {"kind": "fixed", "base_seconds": 0.2, "max_seconds": 0.2}}


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


async def _run(stack: Any, db: Any, key: str, worker_env: dict[str, str]) -> tuple[Any, Any]:
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    relay = stack.start("relay", env=RELAY_ENV)
    start_worker(stack, env=worker_env)
    api = Api(gateway.url, key)
    try:
        big = await api.submit("always-fail", {"error_bytes": TWO_MB}, **ONE_TRY)
        echoes = await api.submit_batch([{"type": "echo", "payload": {"n": i}} for i in range(200)])
        await wait_states(db, [big["id"]], "dead", timeout=60)
        # Submitted after the poison went through the outbox: they flow all the same.
        later = await api.submit_batch([{"type": "echo", "payload": {"n": i}} for i in range(200)])
        ids = [j["id"] for j in echoes + later]
        await wait_states(db, ids, "succeeded", timeout=60)
        dead = await api.job(big["id"])
    finally:
        await api.close()
    return dead, relay


async def test_a_2mb_error_is_capped_and_stops_nothing(stack, db, make_api_key):
    dead, _ = await _run(stack, db, await make_api_key(), {})
    message = dead["last_error"]["message"]
    assert len(message.encode()) <= 8 * 1024
    assert f"[... cut: {TWO_MB} bytes," in message


async def test_an_error_too_large_for_the_broker_is_set_aside_and_the_rest_flows(
    stack, db, make_api_key
):
    # The worker keeps the whole error: its events and dead letter exceed the relay's 1 MB.
    dead, relay = await _run(
        stack, db, await make_api_key(), {"JOBLINE_WORKER_ERROR_MAX_BYTES": str(4 * TWO_MB)}
    )
    assert len(dead["last_error"]["message"].encode()) >= TWO_MB
    await asyncio.sleep(0.5)
    set_aside = metric_value(
        await asyncio.to_thread(_metrics, relay.url), "jobline_relay_messages_set_aside_total"
    )
    async with db.connection() as conn:
        kept = await conn.fetch(
            "SELECT topics, reason FROM outbox_set_aside WHERE job_id = $1 ORDER BY id",
            UUID(str(dead["id"])),
        )
    # The "retrying" and "dead" events and the dead letter each carried the 2 MB error.
    messages = [t for r in kept for t in r["topics"]]
    assert messages == ["events", "events", "jobs.dlq"]
    assert all("the limit is" in r["reason"] for r in kept)
    assert set_aside == len(messages)
    print(f"\n{len(messages)} messages set aside (metric {set_aside:.0f}); 400 jobs flowed")
