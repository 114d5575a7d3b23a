"""The relay's webhook fan-out and delivery loop in-process, against this run's PostgreSQL
and broker, delivering to a receiver process that verifies every signature with the
``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from jobline.broker.kafka import ensure_topics, make_producer
from jobline.core import cloudevent, topics
from jobline.core.webhooks import addresses, signing
from jobline.core.webhooks.retry import RetryPolicy
from jobline.pg import webhookstore
from jobline.pg.db import Database
from jobline.pg.webhookstore import Result
from jobline_relay.webhooks import Webhooks, sender
from jobline_relay.webhooks.delivery import Deliverer
from jobline_relay.webhooks.fanout import Fanout
from tests.support import new_tenant, wait_for
from tests.webhook_receiver import Receiver


def event(
    tenant: str, state: str = "succeeded", job_id: str | None = None, sequence: int = 1, **at: Any
) -> bytes:
    """A lifecycle event as the outbox publishes it (its id: ``<job id>:<sequence>``)."""
    return cloudevent.encode_job_event(
        job_id=job_id or str(uuid4()),
        sequence=sequence,
        state=state,
        time=at.get("time", datetime.now(UTC)),
        data={"tenant": tenant, "job_id": job_id, "state": state},
    )


async def endpoint(
    db: Database, tenant: str, url: str, types: list[str] | None = None
) -> tuple[UUID, str]:
    """An endpoint row written directly (the gateway's own checks are its tests' business)."""
    secret = signing.generate_secret()
    async with db.connection() as conn:
        row = await webhookstore.SQL.fetchrow(
            conn,
            "insert_endpoint",
            tenant_id=tenant,
            url=url,
            description="",
            event_types=types or ["*"],
            secret=secret,
        )
    assert row is not None
    return row["id"], secret


async def deliveries(db: Database, endpoint_id: UUID) -> list[Any]:
    async with db.connection() as conn:
        return list(
            await conn.fetch(
                "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at",
                endpoint_id,
            )
        )


async def endpoint_row(db: Database, endpoint_id: UUID) -> Any:
    async with db.connection() as conn:
        return await conn.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", endpoint_id)


async def drain(deliverer: Deliverer, db: Database, endpoint_id: UUID, done: set[str]) -> list[Any]:
    """Delivery rounds until every delivery of the endpoint is in a status of ``done``."""
    async with sender.make_client(5.0, 4) as client:

        async def finished() -> list[Any] | None:
            await deliverer.round(client)
            rows = await deliveries(db, endpoint_id)
            return rows if rows and all(r["status"] in done for r in rows) else None

        result: list[Any] = await wait_for(finished, timeout=30, interval=0.02)
        return result


async def test_fan_out_is_per_tenant_per_type_and_idempotent(db, relay_settings):
    tenant, other = await new_tenant(db), await new_tenant(db)
    fanout = Fanout(relay_settings(), db, wake=lambda: None)
    all_types, _ = await endpoint(db, tenant, "http://203.0.113.1/a", ["*"])
    only_dead, _ = await endpoint(db, tenant, "http://203.0.113.1/b", ["jobline.job.dead"])
    elsewhere, _ = await endpoint(db, other, "http://203.0.113.1/c", ["*"])
    before_it = event(tenant, time=datetime.now(UTC) - timedelta(hours=1))
    values = [event(tenant, "succeeded"), event(tenant, "dead"), before_it, b"not json", None]
    assert await fanout.fan_out(values) == 3
    assert await fanout.fan_out(values) == 3  # consumed again: matched again...
    assert len(await deliveries(db, all_types)) == 2  # ...but nothing new was written
    assert [r["event_type"] for r in await deliveries(db, only_dead)] == ["jobline.job.dead"]
    assert await deliveries(db, elsewhere) == []
    # Disabled endpoints get nothing.
    async with db.connection() as conn:
        await conn.execute("UPDATE webhook_endpoints SET enabled = false WHERE id = $1", only_dead)
    assert await fanout.fan_out([event(tenant, "dead")]) == 1


async def test_events_from_the_topic_are_delivered_signed(
    db, relay_settings, kafka_settings, receiver: Receiver, kafka_group_overrides
):
    """The whole path in-process: the events topic, the fan-out's consumer group, the
    delivery loop, the receiver verifying with standardwebhooks."""
    tenant = await new_tenant(db)
    path = f"/ok/{uuid4().hex}"
    endpoint_id, secret = await endpoint(db, tenant, receiver.url(path))
    receiver.secret(path, secret)
    settings = relay_settings(
        webhook_allow_private_addresses=True,
        webhook_fetch_max_wait_ms=20,
        webhook_kafka_session_timeout_ms=kafka_group_overrides.get("session_timeout_ms", 10_000),
        webhook_kafka_heartbeat_interval_ms=kafka_group_overrides.get(
            "heartbeat_interval_ms", 3_000
        ),
        webhook_poll_interval_seconds=0.1,
        # Its own topics and consumer group: the session's group is shared with every relay
        # process the other tests start, and its committed positions are theirs.
        topic_prefix=f"{kafka_settings.topic_prefix}-wh{uuid4().hex[:6]}",
    )
    events_topic = topics.events_topic(settings.topic_prefix)
    await ensure_topics(settings, [events_topic])
    webhooks = Webhooks(settings, db)
    webhooks.start()
    producer = make_producer(kafka_settings)
    await producer.start()
    job_id = str(uuid4())
    try:
        for sequence, state in enumerate(("queued", "started", "succeeded"), start=1):
            await producer.send_and_wait(
                events_topic,
                event(tenant, state, job_id, sequence),
                key=job_id.encode(),
            )

        async def three() -> list[Any] | None:
            found = receiver.records(path)
            return found if len(found) >= 3 else None

        records = await wait_for(three, timeout=30)
    finally:
        await producer.stop()
        await webhooks.stop()
    assert all(r["verified"] for r in records), records
    assert {r["event"]["type"] for r in records} == {
        "jobline.job.queued",
        "jobline.job.started",
        "jobline.job.succeeded",
    }
    assert {r["event"]["subject"] for r in records} == {job_id}
    rows = await wait_for(lambda: _all_succeeded(db, endpoint_id), timeout=10)
    assert {str(r["id"]) for r in rows} == {r["headers"]["webhook-id"] for r in records}
    assert all(r["headers"]["content-type"] == "application/cloudevents+json" for r in records)


async def _all_succeeded(db: Database, endpoint_id: UUID) -> list[Any] | None:
    rows = await deliveries(db, endpoint_id)
    return rows if len(rows) == 3 and all(r["status"] == "succeeded" for r in rows) else None


async def test_a_failing_receiver_is_retried_with_the_same_id(db, relay_settings, receiver):
    tenant = await new_tenant(db)
    path = f"/fail/2/{uuid4().hex}"
    endpoint_id, secret = await endpoint(db, tenant, receiver.url(path))
    receiver.secret(path, secret)
    settings = relay_settings(webhook_allow_private_addresses=True)
    deliverer = Deliverer(settings, db)
    await Fanout(settings, db, wake=lambda: None).fan_out([event(tenant)])
    [row] = await drain(deliverer, db, endpoint_id, {"succeeded", "failed"})
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("succeeded", 3, 200)
    records = receiver.records(path)
    assert [r["status"] for r in records] == [500, 500, 200]
    assert all(r["verified"] for r in records)
    assert {r["headers"]["webhook-id"] for r in records} == {str(row["id"])}
    assert (await endpoint_row(db, endpoint_id))["consecutive_failures"] == 0


async def test_repeated_failures_disable_the_endpoint_and_hold_the_rest(
    db, relay_settings, receiver
):
    tenant = await new_tenant(db)
    path = f"/down/{uuid4().hex}"
    endpoint_id, secret = await endpoint(db, tenant, receiver.url(path))
    receiver.secret(path, secret)
    settings = relay_settings(
        webhook_allow_private_addresses=True, webhook_max_attempts=2, webhook_disable_after=2
    )
    deliverer = Deliverer(settings, db)
    fanout = Fanout(settings, db, wake=lambda: None)
    await fanout.fan_out([event(tenant), event(tenant)])
    rows = await drain(deliverer, db, endpoint_id, {"failed"})
    assert [(r["attempts"], r["last_status_code"], r["last_error"]) for r in rows] == [
        (2, 500, "HTTP 500"),
        (2, 500, "HTTP 500"),
    ]
    disabled = await endpoint_row(db, endpoint_id)
    assert disabled["enabled"] is False
    assert disabled["consecutive_failures"] == 2
    assert "2 deliveries in a row failed" in disabled["disabled_reason"]
    assert len(receiver.records(path)) == 4
    # A disabled endpoint gets no new deliveries from the fan-out.
    assert await fanout.fan_out([event(tenant)]) == 0


async def test_private_addresses_are_refused_at_delivery(db, relay_settings, receiver):
    """A name the gateway could not judge when saving is resolved at every delivery, and a
    loopback or private answer is refused: nothing reaches the receiver. This machine's
    host name stands in for a name whose DNS points inside (a rebinding attacker's)."""
    tenant = await new_tenant(db)
    path = f"/ok/{uuid4().hex}"
    name = socket.gethostname()
    resolved = await sender.resolve(name, receiver.port)
    assert not any(addresses.refusal(ipaddress.ip_address(a)) is None for a in resolved), (
        f"this test needs the host name {name} to resolve to non-public addresses: {resolved}"
    )
    by_name, secret = await endpoint(db, tenant, receiver.url(path, host=name))
    by_address, _ = await endpoint(db, tenant, receiver.url(path))
    receiver.secret(path, secret)
    settings = relay_settings(webhook_max_attempts=1, webhook_disable_after=100)
    deliverer = Deliverer(settings, db)
    await Fanout(settings, db, wake=lambda: None).fan_out([event(tenant)])
    for endpoint_id in (by_name, by_address):
        [row] = await drain(deliverer, db, endpoint_id, {"failed"})
        assert row["last_error"].startswith("refused: "), row["last_error"]
        assert " address" in row["last_error"]
        assert row["last_status_code"] is None
    assert receiver.records(path) == []


async def test_an_allowed_network_and_the_connection_keeps_the_name(db, relay_settings, receiver):
    """With 127.0.0.1 allowed, a name resolving to it is delivered; the request goes to the
    checked address but carries the URL's own Host."""
    tenant = await new_tenant(db)
    path = f"/ok/{uuid4().hex}"
    endpoint_id, secret = await endpoint(db, tenant, receiver.url(path, host="localhost"))
    receiver.secret(path, secret)
    resolved = await sender.resolve("localhost", receiver.port)
    settings = relay_settings(webhook_allowed_networks=",".join(resolved))
    await Fanout(settings, db, wake=lambda: None).fan_out([event(tenant)])
    [row] = await drain(Deliverer(settings, db), db, endpoint_id, {"succeeded", "failed"})
    [record] = receiver.records(path)
    assert row["status"] == "succeeded", row["last_error"]
    assert record["headers"]["host"] == f"localhost:{receiver.port}"
    assert record["verified"]


async def test_a_rotated_secret_signs_beside_the_new_one(
    db, relay_settings, receiver, make_api_key
):
    tenant = await new_tenant(db)
    old_path, new_path = f"/ok/{uuid4().hex}", f"/ok/{uuid4().hex}"
    endpoint_id, old = await endpoint(db, tenant, receiver.url(old_path))
    new = signing.generate_secret()
    async with db.connection() as conn:
        await webhookstore.SQL.fetchrow(
            conn, "rotate_secret", id=endpoint_id, tenant_id=tenant, secret=new, grace_seconds=60
        )
    receiver.secret(old_path, old)
    receiver.secret(new_path, new)
    settings = relay_settings(webhook_allow_private_addresses=True)
    await Fanout(settings, db, wake=lambda: None).fan_out([event(tenant)])
    await drain(Deliverer(settings, db), db, endpoint_id, {"succeeded"})
    # The same delivery to the new path verifies with the new secret alone.
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE webhook_endpoints SET url = $2 WHERE id = $1",
            endpoint_id,
            receiver.url(new_path),
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0,"
            " next_attempt_at = now() WHERE endpoint_id = $1",
            endpoint_id,
        )
    await drain(Deliverer(settings, db), db, endpoint_id, {"succeeded"})
    [first], [second] = receiver.records(old_path), receiver.records(new_path)
    assert first["verified"]
    assert second["verified"]
    assert len(first["headers"]["webhook-signature"].split(" ")) == 2


async def test_a_lapsed_lease_delivers_again_and_a_stale_result_writes_nothing(db, relay_settings):
    tenant = await new_tenant(db)
    endpoint_id, _ = await endpoint(db, tenant, "http://203.0.113.1/x")
    settings = relay_settings()
    await Fanout(settings, db, wake=lambda: None).fan_out([event(tenant)])
    async with db.transaction() as conn:
        claims = await webhookstore.claim_due(conn, 100, lease_seconds=0)
    [first] = [c for c in claims if c.endpoint_id == endpoint_id]
    # The lease ran out (a relay died mid-request): the delivery is claimable again.
    async with db.transaction() as conn:
        again = await webhookstore.claim_due(conn, 100, lease_seconds=60)
    [second] = [c for c in again if c.endpoint_id == endpoint_id]
    assert (second.id, second.attempts) == (first.id, first.attempts + 1)
    policy = RetryPolicy(max_attempts=5, base_seconds=1, max_seconds=1, disable_after=1)
    now, rng = datetime.now(UTC), random.Random(1)
    async with db.transaction() as conn:
        late = await webhookstore.record(
            conn, first, status_code=200, error=None, policy=policy, now=now, rng=rng
        )
        current = await webhookstore.record(
            conn, second, status_code=200, error=None, policy=policy, now=now, rng=rng
        )
    assert (late.result, current.result) == (Result.STALE, Result.SUCCEEDED)
    [row] = await deliveries(db, endpoint_id)
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_a_slow_receiver_holds_its_own_slot_not_the_others(db, relay_settings, receiver):
    """The delivery loop keeps its slots busy: while one receiver sits on a request, the
    other slot delivers everything else."""
    tenant = await new_tenant(db)
    name = uuid4().hex
    slow_path, fast_path = f"/hold/{name}/x", f"/ok/{uuid4().hex}"
    slow, slow_secret = await endpoint(db, tenant, receiver.url(slow_path), ["jobline.job.dead"])
    fast, fast_secret = await endpoint(db, tenant, receiver.url(fast_path), ["jobline.job.queued"])
    receiver.secret(slow_path, slow_secret)
    receiver.secret(fast_path, fast_secret)
    settings = relay_settings(
        webhook_allow_private_addresses=True,
        webhook_concurrency=2,
        webhook_batch_size=10,
        webhook_poll_interval_seconds=0.05,
    )
    deliverer = Deliverer(settings, db)
    fanout = Fanout(settings, db, wake=deliverer.wake)
    await fanout.fan_out([event(tenant, "dead")])
    stop = asyncio.Event()
    loop = asyncio.create_task(deliverer.run(stop))
    try:
        # The slow one is claimed and its request waits; only then do the others arrive.
        await wait_for(lambda: _in_flight(db, slow), timeout=30)
        await fanout.fan_out([event(tenant, "queued") for _ in range(5)])

        async def fast_done() -> bool:
            rows = await deliveries(db, fast)
            return len(rows) == 5 and all(r["status"] == "succeeded" for r in rows)

        await wait_for(fast_done, timeout=30)
        [held] = await deliveries(db, slow)
        assert (held["status"], held["attempts"]) == ("pending", 1)  # still in flight
        await asyncio.to_thread(receiver.release, name)
        await wait_for(lambda: _status(db, slow, "succeeded"), timeout=30)
    finally:
        stop.set()
        deliverer.wake()
        await asyncio.wait_for(loop, timeout=30)


async def _in_flight(db: Database, endpoint_id: UUID) -> bool:
    return [(r["status"], r["attempts"]) for r in await deliveries(db, endpoint_id)] == [
        ("pending", 1)
    ]


async def _status(db: Database, endpoint_id: UUID, status: str) -> bool:
    return [r["status"] for r in await deliveries(db, endpoint_id)] == [status]


async def test_stop_returns_promptly_when_idle(db, relay_settings):
    webhooks = Webhooks(relay_settings(webhook_poll_interval_seconds=30), db)
    webhooks.start()
    await asyncio.sleep(0.2)
    await asyncio.wait_for(webhooks.stop(), timeout=20)
