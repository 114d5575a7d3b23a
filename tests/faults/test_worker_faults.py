"""The worker under faults: poison messages, duplicate deliveries, a SIGKILLed worker."""

from __future__ import annotations

import urllib.request
from uuid import uuid4

import pytest

from jobline.broker import kafka
from jobline.core import topics
from tests.overlap import most_at_once
from tests.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    Api,
    TopicReader,
    attempts_of,
    dlq_bodies,
    email_effects,
    insert_jobs,
    job_of,
    make_job,
    metric_value,
    new_tenant,
    start_worker,
    wait_for,
    wait_states,
)


@pytest.fixture
def relay(stack):
    return stack.start("relay", env=RELAY_ENV)


def _metrics(service) -> str:
    with urllib.request.urlopen(service.url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


async def _produce(kafka_settings, topic: str, key: bytes, *values: bytes) -> None:
    await kafka.ensure_topics(kafka_settings, [topic])
    producer = kafka.make_producer(kafka_settings)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, key=key, value=value)
    finally:
        await producer.stop()


async def test_a_poison_message_goes_to_the_dlq_and_the_job_behind_it_runs(
    stack, relay, db, kafka_settings
):
    prefix = kafka_settings.topic_prefix
    work = topics.work_topic(prefix, "default")
    tenant = await new_tenant(db)
    job = make_job(tenant, "echo", "default", {"behind": "poison"}, id=uuid4())
    key = str(job.id).encode()  # the relay publishes the job with this key: same partition
    async with TopicReader(kafka_settings, topics.dlq_topic(prefix)) as dlq:
        start_worker(stack)
        await _produce(kafka_settings, work, key, b'{"id": "not-a-uuid"', b"\xff\xfe\x00")
        await insert_jobs(db, [job])
        await wait_states(db, [job.id], "succeeded", timeout=30)

        def poison(records):
            return [b for b in dlq_bodies(records) if b.get("source", {}).get("key") == str(job.id)]

        await dlq.until(lambda records: len(poison(records)) == 2, timeout=20)
    first, second = poison(dlq.records)
    assert first["reason"] == second["reason"] == "undecodable"
    assert first["value"] == '{"id": "not-a-uuid"'
    assert second["value_encoding"] == "base64"
    assert first["source"]["topic"] == work
    assert first["source"]["offset"] < second["source"]["offset"]


async def test_the_same_job_message_five_times_runs_the_handler_once(
    stack, relay, db, kafka_settings
):
    tenant = await new_tenant(db)
    job = make_job(tenant, "send-email", "emails", {"to": "a@example.com", "subject": "once"})
    worker = start_worker(stack)
    await insert_jobs(db, [job])  # the relay publishes it once; we write it 5 more times
    envelope = job.envelope(1).encode()
    await _produce(
        kafka_settings,
        topics.work_topic(kafka_settings.topic_prefix, "emails"),
        str(job.id).encode(),
        *[envelope] * 5,
    )
    await wait_states(db, [job.id], "succeeded", timeout=30)

    async def all_skipped() -> bool:
        text = _metrics(worker)
        return metric_value(text, "jobline_worker_duplicates_skipped_total") >= 5

    await wait_for(all_skipped, 15, 0.2)
    assert await email_effects(db, [str(job.id)]) == {str(job.id): 1}
    assert len(await attempts_of(db, job.id)) == 1


async def test_a_killed_workers_jobs_finish_on_another_after_the_lease_expires(
    stack, relay, db, make_api_key
):
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    api = Api(gateway.url, await make_api_key())
    try:
        first = start_worker(stack, "--concurrency", "32")
        fixed = {"kind": "fixed", "base_seconds": 0.2, "max_seconds": 0.2}
        sleeps = await api.submit_batch(
            [{"type": "sleep", "payload": {"seconds": 3}, "backoff": fixed} for _ in range(6)]
        )
        emails = await api.submit_batch(
            [
                {
                    "type": "send-email",
                    "queue": "emails",
                    "payload": {"to": f"u{i}@example.com", "subject": "crash"},
                    "backoff": fixed,
                }
                for i in range(300)
            ]
        )
        sleep_ids = [j["id"] for j in sleeps]
        email_ids = [j["id"] for j in emails]
        await wait_states(db, sleep_ids, "running", timeout=30)
        first.kill()  # SIGKILL: no hand-back, no commit, leases left to expire
        second = start_worker(stack)
        await wait_states(db, sleep_ids + email_ids, "succeeded", timeout=60)
    finally:
        await api.close()
    for job_id in sleep_ids:
        attempts = await attempts_of(db, job_id)
        assert attempts[0]["outcome"] == "lease_expired", attempts
        assert attempts[-1]["outcome"] == "succeeded"
        assert attempts[-1]["worker_id"] != attempts[0]["worker_id"]
        assert (await job_of(db, job_id)).attempt == len(attempts)
    effects = await email_effects(db, email_ids)
    assert sorted(effects) == sorted(email_ids)  # one effect row per job: exactly once
    # A delivery repeated after the crash (handler ran, outcome not yet recorded) reused the
    # idempotency key: detected, counted, not sent again.
    repeated = sum(d - 1 for d in effects.values())
    detected = metric_value(_metrics(second), "jobline_examples_email_duplicate_effects_total")
    assert repeated == detected


async def test_a_concurrency_limit_holds_when_a_worker_is_killed_mid_run(stack, relay, db):
    """200 jobs of one customer, limit 5 (the example ``per-customer``), two worker processes,
    the one running jobs SIGKILLed mid-run: its slots come back with its leases (the relay
    rescues them), and at no moment do the attempts' own timestamps show more than 5 running."""
    tenant = await new_tenant(db)
    jobs = [
        make_job(tenant, "per-customer", "default", {"customer_id": "c1", "seconds": 0.1})
        for _ in range(200)
    ]
    workers = [start_worker(stack, "--concurrency", "8") for _ in range(2)]
    ids = await insert_jobs(db, jobs)
    owner = await wait_for(lambda: _a_lease_owner(db, ids), timeout=30)
    # The worker id is host:pid:suffix; kill the process that runs jobs now.
    victim = next(w for w in workers if f":{w.proc.pid}:" in owner)
    victim.kill()  # SIGKILL: its running attempts keep their slots until their leases expire
    await wait_states(db, ids, "succeeded", timeout=90)
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT started_at, finished_at, outcome FROM job_attempts"
            " WHERE job_id = ANY($1::uuid[])",
            ids,
        )
    peak = most_at_once((r["started_at"], r["finished_at"]) for r in rows)
    expired = sum(1 for r in rows if r["outcome"] == "lease_expired")
    print(f"200 jobs, limit 5, a worker killed: at most {peak} at once; {expired} leases expired")
    assert peak <= 5
    assert expired > 0  # the kill really left running attempts behind


async def _a_lease_owner(db, ids) -> str | None:
    async with db.connection() as conn:
        owner = await conn.fetchval(
            "SELECT lease_owner FROM jobs WHERE id = ANY($1::uuid[]) AND state = 'running'"
            " AND lease_owner IS NOT NULL LIMIT 1",
            ids,
        )
    return str(owner) if owner else None
