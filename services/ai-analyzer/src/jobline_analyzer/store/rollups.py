"""Rollups: lifecycle events in, per-bucket counts and histograms out.

Rollups merge by addition (counts, sums, and histograms element-wise), so a batch writes
deltas with ``INSERT ... ON CONFLICT DO UPDATE`` and the order of batches does not matter.
Idempotency comes from ``analyzer_seen_events``: the batch inserts its event ids first, in the
same transaction, and only the ids that were new are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline_analyzer.rollup import Batch

_MARK_SEEN = text(
    # ON CONFLICT DO NOTHING RETURNING yields only the ids no earlier transaction recorded;
    # a concurrent replica inserting the same id makes this wait for it, then skip it.
    "INSERT INTO analyzer_seen_events (event_id) SELECT unnest(CAST(:ids AS text[]))"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)

# Element-wise sum of two histograms; unnest pads the shorter (an empty default) with NULLs.
_HIST_SUM = (
    "ARRAY(SELECT coalesce(a, 0) + coalesce(b, 0)"
    " FROM unnest(r.{col}, EXCLUDED.{col}) WITH ORDINALITY AS u(a, b, i)"
    " ORDER BY i)"
)

_ADD_ROLLUP = text(
    "INSERT INTO analyzer_rollups AS r (tenant_id, job_type, bucket, submitted, started,"
    " succeeded, retried, dead, cancelled, run_hist, run_sum, wait_hist, wait_sum)"
    " VALUES (:tenant, :type, :bucket, :submitted, :started, :succeeded, :retried, :dead,"
    " :cancelled, :run_hist, :run_sum, :wait_hist, :wait_sum)"
    " ON CONFLICT (tenant_id, job_type, bucket) DO UPDATE SET"
    " submitted = r.submitted + EXCLUDED.submitted,"
    " started = r.started + EXCLUDED.started,"
    " succeeded = r.succeeded + EXCLUDED.succeeded,"
    " retried = r.retried + EXCLUDED.retried,"
    " dead = r.dead + EXCLUDED.dead,"
    " cancelled = r.cancelled + EXCLUDED.cancelled,"
    f" run_hist = {_HIST_SUM.format(col='run_hist')},"
    " run_sum = r.run_sum + EXCLUDED.run_sum,"
    f" wait_hist = {_HIST_SUM.format(col='wait_hist')},"
    " wait_sum = r.wait_sum + EXCLUDED.wait_sum"
)

_ADD_ERRORS = text(
    "INSERT INTO analyzer_error_rollups AS e"
    " (tenant_id, job_type, bucket, fingerprint, error_class, count)"
    " VALUES (:tenant, :type, :bucket, :fingerprint, :error_class, :count)"
    " ON CONFLICT (tenant_id, job_type, bucket, fingerprint)"
    " DO UPDATE SET count = e.count + EXCLUDED.count"
)

_UPSERT_JOB = text(
    # Events of one job may arrive out of order (several relay replicas): the highest
    # sequence decides the state.
    "INSERT INTO analyzer_jobs AS j"
    " (job_id, tenant_id, job_type, state, sequence, max_attempts, updated_at)"
    " VALUES (:job_id, :tenant, :type, :state, :sequence, :max_attempts, :time)"
    " ON CONFLICT (job_id) DO UPDATE SET state = EXCLUDED.state, sequence = EXCLUDED.sequence,"
    " max_attempts = EXCLUDED.max_attempts, updated_at = EXCLUDED.updated_at"
    " WHERE j.sequence < EXCLUDED.sequence"
)

_UPSERT_ATTEMPT = text(
    "INSERT INTO analyzer_attempts AS a"
    " (job_id, attempt, outcome, error_class, started_at, finished_at)"
    " VALUES (:job_id, :attempt, :outcome, :error_class, :started_at, :finished_at)"
    " ON CONFLICT (job_id, attempt) DO UPDATE SET"
    " outcome = coalesce(EXCLUDED.outcome, a.outcome),"
    " error_class = coalesce(EXCLUDED.error_class, a.error_class),"
    " started_at = coalesce(a.started_at, EXCLUDED.started_at),"
    " finished_at = coalesce(EXCLUDED.finished_at, a.finished_at)"
)

_UPSERT_ATTEMPT_WEAK = text(
    "INSERT INTO analyzer_attempts AS a (job_id, attempt, outcome, finished_at)"
    " VALUES (:job_id, :attempt, :outcome, :finished_at)"
    " ON CONFLICT (job_id, attempt) DO UPDATE SET"
    " outcome = EXCLUDED.outcome, finished_at = EXCLUDED.finished_at"
    " WHERE a.outcome IS NULL"
)


async def mark_seen(conn: AsyncConnection, ids: Sequence[str]) -> set[str]:
    """Record event ids; return those not recorded before."""
    if not ids:
        return set()
    rows = await conn.execute(_MARK_SEEN, {"ids": list(ids)})
    return {r.event_id for r in rows}


async def write_batch(conn: AsyncConnection, batch: Batch) -> None:
    """Add a batch of new events to the rollups, error counts, jobs and attempts."""
    if batch.rollups:
        await conn.execute(
            _ADD_ROLLUP,
            [
                {
                    "tenant": tenant,
                    "type": job_type,
                    "bucket": bucket,
                    "submitted": d.submitted,
                    "started": d.started,
                    "succeeded": d.succeeded,
                    "retried": d.retried,
                    "dead": d.dead,
                    "cancelled": d.cancelled,
                    "run_hist": d.run_hist,
                    "run_sum": d.run_sum,
                    "wait_hist": d.wait_hist,
                    "wait_sum": d.wait_sum,
                }
                for (tenant, job_type, bucket), d in sorted(batch.rollups.items())
            ],
        )
    if batch.errors:
        await conn.execute(
            _ADD_ERRORS,
            [
                {
                    "tenant": tenant,
                    "type": job_type,
                    "bucket": bucket,
                    "fingerprint": fp,
                    "error_class": cls,
                    "count": n,
                }
                for (tenant, job_type, bucket, fp), (cls, n) in sorted(batch.errors.items())
            ],
        )
    if batch.jobs:
        await conn.execute(
            _UPSERT_JOB,
            [
                {
                    "job_id": j.job_id,
                    "tenant": j.tenant,
                    "type": j.job_type,
                    "state": j.state,
                    "sequence": j.sequence,
                    "max_attempts": j.max_attempts,
                    "time": j.time,
                }
                for j in sorted(batch.jobs.values(), key=lambda j: j.job_id)
            ],
        )
    # One statement per update, in event order: several may touch the same attempt.
    for a in batch.attempts:
        if a.weak:
            await conn.execute(
                _UPSERT_ATTEMPT_WEAK,
                {
                    "job_id": a.job_id,
                    "attempt": a.attempt,
                    "outcome": a.outcome,
                    "finished_at": a.finished_at,
                },
            )
        else:
            await conn.execute(
                _UPSERT_ATTEMPT,
                {
                    "job_id": a.job_id,
                    "attempt": a.attempt,
                    "outcome": a.outcome,
                    "error_class": a.error_class,
                    "started_at": a.started_at,
                    "finished_at": a.finished_at,
                },
            )


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One stored bucket of one series, with its error counts by class."""

    bucket: datetime
    submitted: int
    started: int
    succeeded: int
    retried: int
    dead: int
    run_hist: list[int]
    wait_hist: list[int]
    errors: dict[str, int]


async def recent_series(conn: AsyncConnection, since: datetime) -> list[tuple[str, str]]:
    """Series with rollups since ``since``."""
    rows = await conn.execute(
        text("SELECT DISTINCT tenant_id, job_type FROM analyzer_rollups WHERE bucket >= :since"),
        {"since": since},
    )
    return [(r.tenant_id, r.job_type) for r in rows]


async def first_bucket(
    conn: AsyncConnection, tenant: str, job_type: str, since: datetime
) -> datetime | None:
    """Earliest bucket of a series since ``since``."""
    value: datetime | None = await conn.scalar(
        text(
            "SELECT min(bucket) FROM analyzer_rollups"
            " WHERE tenant_id = :tenant AND job_type = :type AND bucket >= :since"
        ),
        {"tenant": tenant, "type": job_type, "since": since},
    )
    return value


async def rollups_between(
    conn: AsyncConnection, tenant: str, job_type: str, after: datetime, until: datetime
) -> list[RollupRow]:
    """Stored buckets in (after, until], oldest first, with their error counts."""
    params = {"tenant": tenant, "type": job_type, "after": after, "until": until}
    errors: dict[datetime, dict[str, int]] = {}
    for r in await conn.execute(
        text(
            "SELECT bucket, error_class, count AS n FROM analyzer_error_rollups"
            " WHERE tenant_id = :tenant AND job_type = :type"
            " AND bucket > :after AND bucket <= :until"
        ),
        params,
    ):
        by_class = errors.setdefault(r.bucket, {})
        by_class[r.error_class] = by_class.get(r.error_class, 0) + r.n
    rows = await conn.execute(
        text(
            "SELECT bucket, submitted, started, succeeded, retried, dead, run_hist, wait_hist"
            " FROM analyzer_rollups WHERE tenant_id = :tenant AND job_type = :type"
            " AND bucket > :after AND bucket <= :until ORDER BY bucket"
        ),
        params,
    )
    return [
        RollupRow(
            bucket=r.bucket,
            submitted=r.submitted,
            started=r.started,
            succeeded=r.succeeded,
            retried=r.retried,
            dead=r.dead,
            run_hist=list(r.run_hist),
            wait_hist=list(r.wait_hist),
            errors=errors.get(r.bucket, {}),
        )
        for r in rows
    ]
