"""The detection loop: closed buckets -> detectors -> findings (stored, published, gauged).

Each tick, every series (tenant, job type) with rollups is fed the buckets that closed since
its checkpoint, in one transaction per series that holds a transaction-level advisory lock on
it (replicas share the work, never feed a series twice), stores the findings, and saves the
detectors' state and the last bucket fed, so a restart resumes where it stopped. Buckets with
no rollup row are fed as empty: a silent minute is information (a stall).

Findings are then published as CloudEvents ``jobline.insight.anomaly`` on the insights topic:
claimed ``FOR UPDATE SKIP LOCKED``, produced, acknowledged, marked published. A crash in
between publishes again (at-least-once; the CloudEvent id is the finding id, so consumers
deduplicate). The analyzer is outside the job path, so a direct produce is fine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from jobline.core import cloudevent as events
from jobline.core import topics
from jobline.pg import engine as db
from jobline_analyzer import histogram, metrics
from jobline_analyzer.findings import Finding
from jobline_analyzer.rollup import bucket_of
from jobline_analyzer.series import BucketInput, SeriesDetectors
from jobline_analyzer.settings import Settings
from jobline_analyzer.store import findings as finding_store
from jobline_analyzer.store import rollups as rollup_store
from jobline_analyzer.store import state as state_store

log = logging.getLogger("jobline.analyzer.detection")

ANOMALY_EVENT = events.INSIGHT_EVENT_PREFIX + "anomaly"
PUBLISH_BATCH = 100


def to_input(row: rollup_store.RollupRow) -> BucketInput:
    """A stored bucket as the detectors see it (medians from the histograms)."""
    return BucketInput(
        bucket=row.bucket,
        submitted=row.submitted,
        started=row.started,
        succeeded=row.succeeded,
        retried=row.retried,
        dead=row.dead,
        runtime_p50=histogram.median(row.run_hist),
        queue_wait_p50=histogram.median(row.wait_hist),
        errors=row.errors,
    )


def anomaly_event(stored: finding_store.StoredFinding) -> bytes:
    """The CloudEvent of a stored finding."""
    f = stored.finding
    event = events.build(
        id=str(stored.id),
        type=ANOMALY_EVENT,
        source=events.INSIGHT_SOURCE,
        subject=f"{f.tenant}/{f.job_type}",
        time=stored.created_at,
        data=stored.to_dict(),
    )
    return events.encode(event)


class DetectionLoop:
    """Feeds closed buckets to the detectors every ``analyzer_detect_interval_seconds``."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        producer: AIOKafkaProducer | None,
        watermark: Callable[[], datetime | None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.producer = producer
        # When ingest last caught up (None: not yet); without one, every closed bucket counts.
        self.watermark = watermark
        self.bucket = timedelta(seconds=settings.analyzer_bucket_seconds)

    def last_closed(self, now: datetime) -> datetime:
        """Start of the newest bucket that is closed at ``now``."""
        horizon = now - timedelta(seconds=self.settings.analyzer_close_delay_seconds)
        return bucket_of(horizon, self.settings.analyzer_bucket_seconds) - self.bucket

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until stopped; a failed tick is logged and retried at the next one."""
        while not stop.is_set():
            try:
                await self.tick(datetime.now(UTC))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("detection tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.analyzer_detect_interval_seconds)

    async def tick(self, now: datetime) -> list[Finding]:
        """Feed every series up to the last closed bucket, publish findings.

        (Old seen event ids are purged by :mod:`jobline_analyzer.retention`, in batches.)
        """
        if self.watermark is not None:
            caught_up = self.watermark()
            if caught_up is None:
                return []  # ingest has not drained its backlog yet
            now = min(now, caught_up)
        since = now - timedelta(hours=self.settings.analyzer_new_series_lookback_hours)
        async with db.transaction(self.engine) as conn:
            series = set(await state_store.series_with_state(conn))
            series |= set(await rollup_store.recent_series(conn, since))
        found: list[Finding] = []
        for tenant, job_type in sorted(series):
            found += await self.feed_series(tenant, job_type, now)
        if self.producer is not None:
            await self.publish()
        return found

    async def feed_series(self, tenant: str, job_type: str, now: datetime) -> list[Finding]:
        """Feed one series its newly closed buckets, in one transaction."""
        until = self.last_closed(now)
        size = self.settings.analyzer_bucket_seconds
        async with db.transaction(self.engine) as conn:
            if not await state_store.try_lock_series(conn, tenant, job_type):
                return []  # another replica is on it
            saved = await state_store.load_state(conn, tenant, job_type)
            detectors: SeriesDetectors | None = None
            if saved is not None and saved[1].get("bucket_seconds") == size:
                last = saved[0]
                detectors = SeriesDetectors.from_state(saved[1])
            else:
                since = now - timedelta(hours=self.settings.analyzer_new_series_lookback_hours)
                first = await rollup_store.first_bucket(conn, tenant, job_type, since)
                if first is None:
                    return []
                last = first - self.bucket
                detectors = SeriesDetectors(tenant, job_type, size)
            if until <= last:
                self._gauge(detectors)
                return []
            limit = last + self.bucket * self.settings.analyzer_max_buckets_per_tick
            until = min(until, limit)
            rows = {
                r.bucket: r
                for r in await rollup_store.rollups_between(conn, tenant, job_type, last, until)
            }
            found: list[Finding] = []
            t = last + self.bucket
            while t <= until:
                row = rows.get(t)
                found += detectors.feed(to_input(row) if row else BucketInput(bucket=t))
                t += self.bucket
            await finding_store.insert_findings(conn, found)
            await state_store.save_state(conn, tenant, job_type, until, detectors.to_state())
        for f in found:
            metrics.FINDINGS.labels(f.kind).inc()
            log.info("anomaly: %s", f.explanation, extra={"tenant": tenant, "kind": f.kind})
        self._gauge(detectors)
        metrics.LAST_BUCKET.labels(tenant, job_type).set(until.timestamp())
        return found

    def _gauge(self, detectors: SeriesDetectors) -> None:
        for kind, count in detectors.active().items():
            metrics.ACTIVE.labels(detectors.tenant, detectors.job_type, kind).set(count)

    async def publish(self) -> int:
        """Produce unpublished findings to the insights topic; return how many."""
        assert self.producer is not None
        topic = topics.insights_topic(self.settings.topic_prefix)
        total = 0
        while True:
            async with db.transaction(self.engine) as conn:
                batch, unreadable = await finding_store.claim_unpublished(conn, PUBLISH_BATCH)
                if unreadable:
                    # One bad row must not stop every later finding: retired, and said.
                    log.error(
                        "findings that do not read as one were not published",
                        extra={"finding_ids": [str(i) for i in unreadable]},
                    )
                    await finding_store.mark_published(conn, unreadable)
                if not batch:
                    if unreadable:
                        continue
                    return total
                sent = [
                    await self.producer.send(
                        topic,
                        anomaly_event(s),
                        key=f"{s.finding.tenant}/{s.finding.job_type}".encode(),
                    )
                    for s in batch
                ]
                await asyncio.gather(*sent)  # every ack before marking
                await finding_store.mark_published(conn, [s.id for s in batch])
            metrics.PUBLISHED.inc(len(batch))
            total += len(batch)
            if len(batch) < PUBLISH_BATCH:
                return total
