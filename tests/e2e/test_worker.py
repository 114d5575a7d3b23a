"""The worker end to end: gateway, relay and worker as processes, real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
from collections import defaultdict
from datetime import datetime
from typing import Any

import pytest

from jobline.core import topics
from tests.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    Api,
    TopicReader,
    dlq_bodies,
    email_effects,
    event_data,
    metric_value,
    start_worker,
    wait_states,
)


@pytest.fixture
async def api(stack, make_api_key):
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    client = Api(gateway.url, await make_api_key())
    yield client
    await client.close()


@pytest.fixture
def relay(stack):
    return stack.start("relay", env=RELAY_ENV)


def _metrics(service) -> str:
    with urllib.request.urlopen(service.url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


async def test_a_thousand_emails_each_sent_once_with_complete_ordered_events(
    api, relay, stack, db, kafka_settings
):
    async with TopicReader(kafka_settings, topics.events_topic(kafka_settings.topic_prefix)) as ev:
        worker = start_worker(stack, "--concurrency", "64")
        jobs = []
        for start in range(0, 1000, 500):
            jobs += await api.submit_batch(
                [
                    {
                        "type": "send-email",
                        "queue": "emails",
                        "payload": {"to": f"user{i}@example.com", "subject": f"hello {i}"},
                    }
                    for i in range(start, start + 500)
                ]
            )
        ids = [j["id"] for j in jobs]
        await wait_states(db, ids, "succeeded", timeout=90)

        wanted = set(ids)
        per_job: dict[str, list[dict[str, Any]]] = defaultdict(list)

        def complete(_records) -> bool:
            for data in event_data(_records[read[0] :]):
                if data["job_id"] in wanted:
                    per_job[data["job_id"]].append(data)
            read[0] = len(_records)
            return len(per_job) == len(wanted) and all(len(v) >= 3 for v in per_job.values())

        read = [0]  # records looked at so far
        await ev.until(complete, timeout=60)

    effects = await email_effects(db, ids)
    assert len(effects) == 1000
    assert set(effects.values()) == {1}  # each key delivered to the handler once
    for job_id, data in per_job.items():
        assert [d["sequence"] for d in data] == [1, 2, 3], job_id
        assert [d["state"] for d in data] == ["queued", "running", "succeeded"], job_id
    text = _metrics(worker)
    assert metric_value(text, "jobline_examples_email_duplicate_effects_total") == 0
    assert metric_value(text, "jobline_worker_jobs_finished_total") >= 1000
    assert metric_value(text, "jobline_worker_queue_wait_seconds_count") >= 1000


async def test_flaky_retries_follow_exponential_backoff(api, relay, stack):
    start_worker(stack)
    base = 0.4
    job = await api.submit(
        "flaky",
        {"failures": 3},
        max_attempts=5,
        backoff={"kind": "exponential", "base_seconds": base, "max_seconds": 30},
    )
    done = await api.wait_status(job["id"], "succeeded", timeout=40)
    assert done["attempt"] == 4
    assert done["result"] == {"attempts": 4}
    attempts = await api.attempts(job["id"])
    assert [a["outcome"] for a in attempts] == ["failed", "failed", "failed", "succeeded"]
    for n, (before, after) in enumerate(itertools.pairwise(attempts), start=1):
        gap = (
            datetime.fromisoformat(after["started_at"])
            - datetime.fromisoformat(before["finished_at"])
        ).total_seconds()
        expected = base * 2 ** (n - 1)  # 0.4, 0.8, 1.6
        # Never early; late by at most the relay's publish and the worker's claim.
        assert expected - 0.05 <= gap <= expected + 1.0, (n, gap, expected)


async def test_always_fail_goes_dead_with_every_error_and_redrive_runs_it_again(
    api, relay, stack, kafka_settings
):
    start_worker(stack)
    dlq = topics.dlq_topic(kafka_settings.topic_prefix)
    async with TopicReader(kafka_settings, dlq) as reader:
        job = await api.submit(
            "always-fail",
            {},
            max_attempts=3,
            backoff={"kind": "fixed", "base_seconds": 0.1, "max_seconds": 0.1},
        )
        await api.wait_status(job["id"], "dead", timeout=30)

        def mine(records):
            return [b for b in dlq_bodies(records) if b.get("envelope", {}).get("id") == job["id"]]

        await reader.until(lambda records: len(mine(records)) == 1, timeout=20)
        (letter,) = mine(reader.records)
        assert [e["attempt"] for e in letter["errors"]] == [1, 2, 3]
        assert {e["error_class"] for e in letter["errors"]} == {"AlwaysFails"}

        redriven = await api.post(job["id"], "redrive")
        assert redriven["status"] in ("queued", "running", "retrying", "dead")

        async def ran_again() -> bool:
            current = await api.job(job["id"])
            return bool(current["status"] == "dead" and current["attempt"] == 6)

        from tests.support import wait_for

        await wait_for(ran_again, 30, 0.2)
        await reader.until(lambda records: len(mine(records)) == 2, timeout=20)
    assert len(await api.attempts(job["id"])) == 6


async def test_cancel_of_a_running_job_stops_its_handler(api, relay, stack):
    worker = start_worker(stack)
    job = await api.submit("sleep", {"seconds": 60})
    await api.wait_status(job["id"], "running", timeout=20)
    await api.post(job["id"], "cancel")
    cancelled = await api.wait_status(job["id"], "cancelled", timeout=5)
    assert cancelled["attempt"] == 1
    (attempt,) = await api.attempts(job["id"])
    assert attempt["outcome"] == "cancelled"
    assert metric_value(_metrics(worker), "jobline_worker_in_flight") == 0


async def test_sigterm_drains_finishes_short_jobs_and_hands_back_the_rest(api, relay, stack):
    worker = start_worker(stack, env={"JOBLINE_WORKER_SHUTDOWN_GRACE_SECONDS": "1.5"})
    short = await api.submit("sleep", {"seconds": 0.8})
    long = await api.submit("sleep", {"seconds": 4})
    await api.wait_status(short["id"], "running", timeout=20)
    await api.wait_status(long["id"], "running", timeout=20)
    code = await asyncio.to_thread(worker.terminate, 20)
    assert code == 0, worker.tail()
    assert (await api.job(short["id"]))["status"] == "succeeded"
    handed_back = await api.job(long["id"])
    assert handed_back["status"] in ("queued", "running")  # re-queued; nobody runs it yet
    assert handed_back["attempts_left"] == handed_back["max_attempts"]  # no attempt charged
    assert [a["outcome"] for a in await api.attempts(long["id"])] == ["handed_back"]
    # Another worker picks it up and finishes it.
    start_worker(stack)
    done = await api.wait_status(long["id"], "succeeded", timeout=30)
    assert done["attempt"] == 2
