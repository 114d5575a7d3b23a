"""The analyzer against real PostgreSQL and the broker: ingest, replay, detection, API, apply.

Every test gets its own topic prefix (so its consumers read only its own events) and its own
tenant (the database is shared by the run). Events are built with the real state machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.broker.kafka import ensure_topics, make_consumer, make_producer
from jobline.core import cloudevent as events
from jobline.core import topics
from jobline.settings import KafkaSettings
from jobline_analyzer.app import create_app
from jobline_analyzer.detection import DetectionLoop
from jobline_analyzer.ingest import Ingestor
from jobline_analyzer.settings import Settings
from tests.integration.analyzer.test_analyzer_limits import audited
from tests.unit.analyzer.lifecycle import Lifecycle, run_job

KeyMaker = Callable[..., Awaitable[str]]


def _settings(database_url: str, kafka_settings: KafkaSettings, **extra: Any) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap=kafka_settings.kafka_bootstrap,
        topic_prefix=f"{kafka_settings.topic_prefix}-{uuid4().hex[:6]}",
        analyzer_group=f"analyzer-{uuid4().hex[:6]}",
        analyzer_detect_interval_seconds=0.3,
        analyzer_close_delay_seconds=0.0,
        analyzer_poll_timeout_ms=200,
        topic_partitions=3,
        **extra,
    )


async def _produce(settings: Settings, jobs: Sequence[Lifecycle], copies: int = 1) -> int:
    """Produce every job's events (``copies`` times each, interleaved); return the count."""
    producer = make_producer(settings)
    await producer.start()
    sent = 0
    try:
        topic = topics.events_topic(settings.topic_prefix)
        futures = []
        for _ in range(copies):
            for job in jobs:
                for raw in job.events:
                    futures.append(await producer.send(topic, raw, key=str(job.job_id).encode()))
                    sent += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def _until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


@asynccontextmanager
async def _ingesting(
    settings: Settings, engine: AsyncEngine, group: str, overrides: dict[str, int]
) -> AsyncIterator[Ingestor]:
    ingestor = Ingestor(settings, engine, group_id=group, consumer_overrides=overrides)
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    try:
        yield ingestor
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _rollups(engine: AsyncEngine, tenant: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT job_type, bucket, submitted, started, succeeded, retried, dead,"
                " cancelled, run_hist, run_sum, wait_hist, wait_sum"
                " FROM analyzer_rollups WHERE tenant_id = :t ORDER BY job_type, bucket"
            ),
            {"t": tenant},
        )
        errors = await conn.execute(
            text(
                "SELECT job_type, bucket, fingerprint, error_class, count"
                " FROM analyzer_error_rollups WHERE tenant_id = :t ORDER BY 1, 2, 3"
            ),
            {"t": tenant},
        )
        return [tuple(r) for r in rows] + [tuple(r) for r in errors]


def _recent(minutes_ago: float) -> datetime:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)


async def test_duplicates_count_once_and_a_replay_rebuilds_the_same_rollups(
    database_url: str,
    kafka_settings: KafkaSettings,
    engine: AsyncEngine,
    kafka_group_overrides: dict[str, int],
) -> None:
    settings = _settings(database_url, kafka_settings)
    await ensure_topics(settings, [topics.events_topic(settings.topic_prefix)])
    tenant = f"t-{uuid4().hex[:8]}"
    t0 = _recent(120)
    jobs = []
    for i in range(24):
        start = t0 + timedelta(seconds=17 * i)  # spread over several minutes
        outcomes = ("s", "fs", "ffs", "fff")[i % 4]
        jobs.append(run_job(tenant, "email", start, outcomes, max_attempts=3))
    jobs.append(run_job(tenant, "sms", t0, "s"))
    # Every event twice: the outbox is at-least-once.
    produced = await _produce(settings, jobs, copies=2)

    async with _ingesting(settings, engine, "first", kafka_group_overrides) as ingestor:
        await _until(lambda: _read(ingestor, produced), 60, "the first pass")
    assert ingestor.counted == produced // 2

    first = await _rollups(engine, tenant)
    totals = [sum(r[i] for r in first if len(r) == 12) for i in range(2, 8)]
    # submitted, started, succeeded, retried, dead, cancelled: counted once each.
    # 6 jobs each of s, fs, ffs, fff (max 3 attempts), plus one sms success.
    assert totals == [25, 6 * (1 + 2 + 3 + 3) + 1, 6 * 3 + 1, 6 * (1 + 2 + 2), 6, 0]
    assert sum(r[4] for r in first if len(r) == 5) == 6 * (1 + 2 + 3)  # failures by class

    # Replay: forget everything derived for this tenant, read the topic again from the start.
    ids = [str(j.job_id) for j in jobs]
    async with engine.begin() as conn:
        for table in ("analyzer_rollups", "analyzer_error_rollups", "analyzer_jobs"):
            await conn.execute(text(f"DELETE FROM {table} WHERE tenant_id = :t"), {"t": tenant})
        await conn.execute(
            text("DELETE FROM analyzer_seen_events WHERE split_part(event_id, ':', 1) = ANY(:ids)"),
            {"ids": ids},
        )
        await conn.execute(
            text("DELETE FROM analyzer_attempts WHERE job_id::text = ANY(:ids)"), {"ids": ids}
        )
    assert await _rollups(engine, tenant) == []
    async with _ingesting(settings, engine, "replay", kafka_group_overrides) as replay:
        await _until(lambda: _read(replay, produced), 60, "the replay")
    assert await _rollups(engine, tenant) == first


async def _read(ingestor: Ingestor, n: int) -> bool:
    return ingestor.read >= n


def _traffic(
    tenant: str, job_type: str, t0: datetime, *, minutes: int, per_minute: int, fail_every: int
) -> list[Lifecycle]:
    """``per_minute`` jobs a minute; every ``fail_every``-th fails once, then succeeds."""
    jobs = []
    n = 0
    for m in range(minutes):
        for i in range(per_minute):
            n += 1
            start = t0 + timedelta(minutes=m, seconds=i * 60 / per_minute)
            outcomes = "fs" if fail_every and n % fail_every == 0 else "s"
            jobs.append(run_job(tenant, job_type, start, outcomes))
    return jobs


@asynccontextmanager
async def _running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://analyzer") as client:
            yield client


async def test_a_failure_burst_becomes_a_finding_on_the_topic_and_in_the_api(  # noqa: PLR0915
    database_url: str,
    kafka_settings: KafkaSettings,
    engine: AsyncEngine,
    make_api_key: KeyMaker,
    kafka_group_overrides: dict[str, int],
) -> None:
    settings = _settings(database_url, kafka_settings)
    tenant = f"t-{uuid4().hex[:8]}"
    key = await make_api_key(scopes="jobs:read", tenant=tenant)
    t0 = _recent(50)
    # 40 quiet minutes (1 in 25 attempts fails), then 6 minutes where 3 in 5 jobs fail twice.
    jobs = _traffic(tenant, "flaky", t0, minutes=40, per_minute=10, fail_every=25)
    burst_start = t0 + timedelta(minutes=40)
    for m in range(6):
        for i in range(10):
            start = burst_start + timedelta(minutes=m, seconds=6 * i)
            jobs.append(run_job(tenant, "flaky", start, "ffs" if i % 5 < 3 else "s"))

    # Historical events: ingest them all before detection starts, as a caught-up analyzer
    # would have. (Live, the ingest watermark keeps half-filled buckets from the detectors.)
    await ensure_topics(settings, [topics.events_topic(settings.topic_prefix)])
    produced = await _produce(settings, jobs)
    assert produced > 1000
    async with _ingesting(settings, engine, "backfill", kafka_group_overrides) as ingestor:
        await _until(lambda: _read(ingestor, produced), 60, "the backfill")

    # A finding row that does not read as one (a kind this release does not know), older
    # than the burst's: retired with an error, never in the way of the findings behind it.
    async with engine.begin() as conn:
        poison = await conn.scalar(
            text(
                "INSERT INTO analyzer_findings (tenant_id, job_type, kind, severity,"
                " window_start, window_end, baseline, observed, score, explanation, created_at)"
                " VALUES (:t, 'flaky', 'no_such_kind', 'warning', :at, :at, 0, 1, 9, 'x', :at)"
                " RETURNING id"
            ),
            {"t": tenant, "at": t0},
        )

    async with _running_app(settings) as client:
        headers = {"Authorization": f"Bearer {key}"}

        async def spotted() -> bool:
            r = await client.get("/v1/insights/anomalies", headers=headers)
            assert r.status_code == 200, r.text
            return any(i["kind"] == "failure_rate_spike" for i in r.json()["items"])

        await _until(spotted, 90, "a failure_rate_spike finding in the API")
        body = (await client.get("/v1/insights/anomalies", headers=headers)).json()
        spike = next(i for i in body["items"] if i["kind"] == "failure_rate_spike")
        assert spike["tenant"] == tenant
        assert spike["job_type"] == "flaky"
        assert spike["observed"] > 0.15
        assert spike["baseline"] < 0.05
        # Found within the burst's first minutes (window ends at a bucket end).
        window_end = datetime.fromisoformat(spike["window_end"])
        assert burst_start < window_end <= burst_start + timedelta(minutes=4)
        assert "flaky failed" in spike["explanation"]

        # Filters, cursor, and errors as problem+json.
        by_kind = await client.get(
            "/v1/insights/anomalies", params={"kind": "stall"}, headers=headers
        )
        assert all(i["kind"] == "stall" for i in by_kind.json()["items"])
        page = await client.get("/v1/insights/anomalies", params={"limit": 1}, headers=headers)
        assert len(page.json()["items"]) == 1
        later = await client.get(
            "/v1/insights/anomalies",
            params={"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
            headers=headers,
        )
        assert later.json()["items"] == []
        anonymous = await client.get("/v1/insights/anomalies")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert anonymous.json()["status"] == 401
        bad = await client.get("/v1/insights/anomalies", params={"kind": "x"}, headers=headers)
        assert (bad.status_code, bad.headers["content-type"]) == (422, "application/problem+json")
        other = await make_api_key(scopes="jobs:read")
        foreign = await client.get(
            "/v1/insights/anomalies", headers={"Authorization": f"Bearer {other}"}
        )
        assert foreign.json()["items"] == []  # another tenant sees nothing of this one

        metrics = (await client.get("/metrics")).text
        gauge = (
            f'jobline_analyzer_active_anomalies{{job_type="flaky",kind="failure_rate_spike",'
            f'tenant="{tenant}"}} 1.0'
        )
        assert gauge in metrics

    # The same finding as a CloudEvent on the insights topic.
    consumer = make_consumer(settings, topics.insights_topic(settings.topic_prefix), group_id=None)
    await consumer.start()
    try:
        insight = None
        deadline = time.monotonic() + 30
        while insight is None and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = events.decode(record.value)
                    if event.get_id() == spike["id"]:
                        insight = event
        assert insight is not None, "the finding never reached the insights topic"
        assert insight.get_type() == "jobline.insight.anomaly"
        assert events.data_of(insight)["kind"] == "failure_rate_spike"
    finally:
        await consumer.stop()

    async with engine.connect() as conn:
        retired = await conn.scalar(
            text("SELECT published_at IS NOT NULL FROM analyzer_findings WHERE id = :id"),
            {"id": poison},
        )
    assert retired, "the unreadable finding was neither published nor retired"

    # A restart resumes from the checkpoint: nothing is fed twice, nothing found twice.
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM analyzer_findings WHERE tenant_id = :t"), {"t": tenant}
        )
    again = await DetectionLoop(settings, engine, None).tick(datetime.now(UTC))
    assert [f for f in again if f.tenant == tenant] == []
    async with engine.connect() as conn:
        assert count == await conn.scalar(
            text("SELECT count(*) FROM analyzer_findings WHERE tenant_id = :t"), {"t": tenant}
        )


async def test_recommendations_reflect_attempts_needed_and_apply_needs_policies_write(  # noqa: PLR0915
    database_url: str, kafka_settings: KafkaSettings, engine: AsyncEngine, make_api_key: KeyMaker
) -> None:
    settings = _settings(database_url, kafka_settings)
    tenant = f"t-{uuid4().hex[:8]}"
    reader = await make_api_key(scopes="jobs:read", tenant=tenant)
    admin = await make_api_key(scopes="policies:write", tenant=tenant)  # no operator scope
    t0 = _recent(90)
    # flaky: every job fails twice with a timeout and succeeds on attempt 3; 40 jobs fail
    # validation on every attempt and die (max 3 attempts).
    jobs = [
        run_job(tenant, "flaky", t0 + timedelta(seconds=20 * i), "ffs", gap=timedelta(seconds=3))
        for i in range(30)
    ]
    jobs += [
        run_job(
            tenant,
            "flaky",
            t0 + timedelta(seconds=20 * i + 7),
            "fff",
            max_attempts=3,
            error=("ValidationError", f"field amount={i} is negative"),
        )
        for i in range(40)
    ]
    async with _running_app(settings) as client:
        produced = await _produce(settings, jobs)
        read = {"Authorization": f"Bearer {reader}"}

        async def ingested() -> bool:
            async with engine.connect() as conn:
                n = await conn.scalar(
                    text(
                        "SELECT count(*) FROM analyzer_jobs WHERE tenant_id = :t AND"
                        " state IN ('succeeded', 'dead')"
                    ),
                    {"t": tenant},
                )
            return bool(n == len(jobs))

        await _until(ingested, 60, f"{produced} events to be ingested")
        r = await client.get("/v1/insights/recommendations", headers=read)
        assert r.status_code == 200, r.text
        (rec,) = r.json()["items"]
        assert rec["job_type"] == "flaky"
        by_k = {a["attempt"]: a for a in rec["attempts"]}
        assert (by_k[1]["trials"], by_k[1]["successes"]) == (70, 0)
        assert (by_k[3]["trials"], by_k[3]["successes"]) == (70, 30)
        assert by_k[3]["low"] < by_k[3]["p"] < by_k[3]["high"]
        assert rec["policy"]["max_attempts"] == 3  # the attempts flaky needed
        assert rec["policy"]["non_retryable_errors"] == ["ValidationError"]
        classes = {c["error_class"]: c for c in rec["error_classes"]}
        assert classes["ValidationError: field amount=<n> is negative"]["retryable"] is False
        timeout_class = next(c for name, c in classes.items() if name.startswith("TimeoutError"))
        assert timeout_class["recovered"] == 30
        assert timeout_class["time_to_recovery"]["median_seconds"] > 0
        assert rec["dlq"]["dead_jobs"] == 40
        assert rec["dlq"]["redrive_likely"] == 0
        assert rec["applied_at"] is None

        async def policy() -> Any:
            async with engine.connect() as conn:
                return (
                    await conn.execute(
                        text(
                            "SELECT max_attempts, backoff, non_retryable_errors, source"
                            " FROM job_type_policies WHERE tenant_id = :t AND type = 'flaky'"
                        ),
                        {"t": tenant},
                    )
                ).one_or_none()

        assert await policy() is None  # advice changes nothing by itself
        url = f"/v1/insights/recommendations/{rec['id']}/apply"
        denied = await client.post(url, headers=read)
        assert denied.status_code == 403
        assert denied.headers["content-type"] == "application/problem+json"
        assert await policy() is None
        missing = await client.post(
            f"/v1/insights/recommendations/{uuid4()}/apply",
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert missing.status_code == 404
        applied = await client.post(url, headers={"Authorization": f"Bearer {admin}"})
        assert applied.status_code == 200, applied.text
        row = await policy()
        assert row is not None
        assert row.max_attempts == 3
        assert row.backoff == rec["policy"]["backoff"]
        assert row.non_retryable_errors == ["ValidationError"]
        assert row.source == "analyzer"
        again = (await client.get("/v1/insights/recommendations", headers=read)).json()
        assert again["items"][0]["applied_at"] is not None
        entry = await audited(engine, tenant)  # who (key, tenant), what, target, from where
        assert (entry.action, entry.target) == ("policy.apply", f"{tenant}/flaky")
        # Another tenant's admin cannot apply this tenant's recommendation.
        stranger = await make_api_key(scopes="admin")
        foreign = await client.post(url, headers={"Authorization": f"Bearer {stranger}"})
        assert foreign.status_code == 404
