"""The analyzer's PostgreSQL tables: the only module of the analyzer that runs SQL.

Rollups merge by addition (counts, sums, and histograms element-wise), so a batch writes
deltas with ``INSERT ... ON CONFLICT DO UPDATE`` and the order of batches does not matter.
Idempotency comes from ``analyzer_seen_events``: the batch inserts its event ids first, in the
same transaction, and only the ids that were new are counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from jobline_analyzer.findings import Finding
from jobline_analyzer.recovery import Attempt, JobHistory
from jobline_analyzer.rollup import Batch

# --- ingest ------------------------------------------------------------------------------

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


async def prune_seen(conn: AsyncConnection, before: datetime) -> int:
    """Forget event ids first seen before ``before``."""
    result = await conn.execute(
        text("DELETE FROM analyzer_seen_events WHERE seen_at < :before"), {"before": before}
    )
    return int(result.rowcount or 0)


# --- detection ---------------------------------------------------------------------------


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


async def series_with_state(conn: AsyncConnection) -> list[tuple[str, str]]:
    """Series the detection loop has a checkpoint for."""
    rows = await conn.execute(text("SELECT tenant_id, job_type FROM analyzer_detector_state"))
    return [(r.tenant_id, r.job_type) for r in rows]


async def recent_series(conn: AsyncConnection, since: datetime) -> list[tuple[str, str]]:
    """Series with rollups since ``since``."""
    rows = await conn.execute(
        text("SELECT DISTINCT tenant_id, job_type FROM analyzer_rollups WHERE bucket >= :since"),
        {"since": since},
    )
    return [(r.tenant_id, r.job_type) for r in rows]


async def try_lock_series(conn: AsyncConnection, tenant: str, job_type: str) -> bool:
    """Transaction-scoped advisory lock: one replica feeds a series at a time."""
    got = await conn.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"jobline-analyzer:{tenant}:{job_type}"},
    )
    return bool(got)


async def load_state(
    conn: AsyncConnection, tenant: str, job_type: str
) -> tuple[datetime, dict[str, Any]] | None:
    """The series' checkpoint: last bucket fed and the detectors' state."""
    row = (
        await conn.execute(
            text(
                "SELECT last_bucket, state FROM analyzer_detector_state"
                " WHERE tenant_id = :tenant AND job_type = :type"
            ),
            {"tenant": tenant, "type": job_type},
        )
    ).one_or_none()
    return None if row is None else (row.last_bucket, row.state)


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


_SAVE_STATE = text(
    "INSERT INTO analyzer_detector_state (tenant_id, job_type, last_bucket, state, updated_at)"
    " VALUES (:tenant, :type, :last, :state, now())"
    " ON CONFLICT (tenant_id, job_type) DO UPDATE SET last_bucket = EXCLUDED.last_bucket,"
    " state = EXCLUDED.state, updated_at = now()"
).bindparams(bindparam("state", type_=JSONB))


async def save_state(
    conn: AsyncConnection, tenant: str, job_type: str, last: datetime, state: dict[str, Any]
) -> None:
    """Checkpoint a series after feeding it."""
    await conn.execute(
        _SAVE_STATE, {"tenant": tenant, "type": job_type, "last": last, "state": state}
    )


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


_INSERT_FINDING = text(
    "INSERT INTO analyzer_findings (tenant_id, job_type, kind, severity, window_start,"
    " window_end, baseline, observed, score, explanation, error_class)"
    " VALUES (:tenant, :job_type, :kind, :severity, :window_start, :window_end, :baseline,"
    " :observed, :score, :explanation, :error_class)"
    " RETURNING id"
)


async def insert_findings(conn: AsyncConnection, findings: Iterable[Finding]) -> list[UUID]:
    """Store findings (unpublished); return their ids."""
    ids = []
    for f in findings:
        ids.append(
            (
                await conn.execute(
                    _INSERT_FINDING,
                    {
                        "tenant": f.tenant,
                        "job_type": f.job_type,
                        "kind": f.kind,
                        "severity": f.severity,
                        "window_start": f.window_start,
                        "window_end": f.window_end,
                        "baseline": f.baseline,
                        "observed": f.observed,
                        "score": f.score,
                        "explanation": f.explanation,
                        "error_class": f.error_class,
                    },
                )
            ).scalar_one()
        )
    return ids


@dataclass(frozen=True, slots=True)
class StoredFinding:
    """A finding as stored: its id and when it was recorded."""

    id: UUID
    created_at: datetime
    finding: Finding

    def to_dict(self) -> dict[str, Any]:
        """The API and CloudEvent body."""
        return {
            "id": str(self.id),
            "created_at": self.created_at.isoformat(),
            **self.finding.to_dict(),
        }


_FINDING_COLUMNS = (
    "id, created_at, tenant_id, job_type, kind, severity, window_start, window_end, baseline,"
    " observed, score, explanation, error_class"
)


def _stored(r: Any) -> StoredFinding:
    return StoredFinding(
        id=r.id,
        created_at=r.created_at,
        finding=Finding(
            tenant=r.tenant_id,
            job_type=r.job_type,
            kind=r.kind,
            severity=r.severity,
            window_start=r.window_start,
            window_end=r.window_end,
            baseline=r.baseline,
            observed=r.observed,
            score=r.score,
            explanation=r.explanation,
            error_class=r.error_class,
        ),
    )


async def claim_unpublished(conn: AsyncConnection, limit: int) -> list[StoredFinding]:
    """Findings not yet on the insights topic, oldest first, locked for this transaction."""
    rows = await conn.execute(
        text(
            f"SELECT {_FINDING_COLUMNS} FROM analyzer_findings WHERE published_at IS NULL"
            " ORDER BY created_at, id LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"limit": limit},
    )
    return [_stored(r) for r in rows]


async def mark_published(conn: AsyncConnection, ids: Sequence[UUID]) -> None:
    """Record that findings reached the insights topic."""
    await conn.execute(
        text("UPDATE analyzer_findings SET published_at = now() WHERE id = ANY(:ids)"),
        {"ids": list(ids)},
    )


async def list_findings(
    conn: AsyncConnection,
    tenant: str,
    *,
    job_type: str | None,
    kind: str | None,
    since: datetime | None,
    before: tuple[datetime, UUID] | None,
    limit: int,
) -> list[StoredFinding]:
    """A tenant's findings newest first, filtered, after a keyset cursor."""
    where = ["tenant_id = :tenant"]
    params: dict[str, Any] = {"tenant": tenant, "limit": limit}
    if job_type is not None:
        where.append("job_type = :type")
        params["type"] = job_type
    if kind is not None:
        where.append("kind = :kind")
        params["kind"] = kind
    if since is not None:
        where.append("window_end >= :since")
        params["since"] = since
    if before is not None:
        where.append("(created_at, id) < (:cursor_at, :cursor_id)")
        params["cursor_at"], params["cursor_id"] = before
    rows = await conn.execute(
        text(
            f"SELECT {_FINDING_COLUMNS} FROM analyzer_findings WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        params,
    )
    return [_stored(r) for r in rows]


# --- recommendations ---------------------------------------------------------------------


async def job_types(conn: AsyncConnection, tenant: str, since: datetime) -> list[str]:
    """Job types of a tenant with jobs updated since ``since``."""
    rows = await conn.execute(
        text(
            "SELECT DISTINCT job_type FROM analyzer_jobs"
            " WHERE tenant_id = :tenant AND updated_at >= :since ORDER BY job_type"
        ),
        {"tenant": tenant, "since": since},
    )
    return [r.job_type for r in rows]


@dataclass(frozen=True, slots=True)
class TypeHistory:
    """Recent jobs of one type and the max_attempts they ran with (most common)."""

    histories: tuple[JobHistory, ...]
    current_max_attempts: int


async def type_history(
    conn: AsyncConnection, tenant: str, job_type: str, since: datetime, limit: int
) -> TypeHistory:
    """The most recent ``limit`` jobs of a type, with their finished attempts."""
    rows = await conn.execute(
        text(
            "WITH j AS (SELECT job_id, state, max_attempts FROM analyzer_jobs"
            "  WHERE tenant_id = :tenant AND job_type = :type AND updated_at >= :since"
            "  ORDER BY updated_at DESC LIMIT :limit)"
            " SELECT j.job_id, j.state, j.max_attempts, a.attempt, a.outcome, a.error_class,"
            " a.started_at, a.finished_at"
            " FROM j LEFT JOIN analyzer_attempts a ON a.job_id = j.job_id"
            " AND a.outcome IN ('succeeded', 'failed') AND a.finished_at IS NOT NULL"
            " ORDER BY j.job_id, a.attempt"
        ),
        {"tenant": tenant, "type": job_type, "since": since, "limit": limit},
    )
    jobs: dict[UUID, tuple[str, list[Attempt]]] = {}
    max_attempts: dict[int, int] = {}
    for r in rows:
        if r.job_id not in jobs:
            jobs[r.job_id] = (r.state, [])
            max_attempts[r.max_attempts] = max_attempts.get(r.max_attempts, 0) + 1
        if r.attempt is None:
            continue
        started = r.started_at or r.finished_at
        jobs[r.job_id][1].append(
            Attempt(r.attempt, r.outcome, started, r.finished_at, r.error_class)
        )
    histories = tuple(
        JobHistory(str(job_id), job_type, state, tuple(attempts))  # type: ignore[arg-type]
        for job_id, (state, attempts) in jobs.items()
        if attempts
    )
    current = max(max_attempts, key=max_attempts.__getitem__) if max_attempts else 3
    return TypeHistory(histories, current)


_SAVE_RECOMMENDATION = text(
    "INSERT INTO analyzer_recommendations (id, tenant_id, job_type, policy, body)"
    " VALUES (:id, :tenant, :type, :policy, :body)"
    " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = now()"
    " RETURNING applied_at"
).bindparams(bindparam("policy", type_=JSONB), bindparam("body", type_=JSONB))


async def save_recommendation(
    conn: AsyncConnection,
    *,
    rec_id: UUID,
    tenant: str,
    job_type: str,
    policy: dict[str, Any],
    body: dict[str, Any],
) -> datetime | None:
    """Keep what was shown so apply writes exactly it; returns when it was applied, if ever."""
    applied: datetime | None = (
        await conn.execute(
            _SAVE_RECOMMENDATION,
            {"id": rec_id, "tenant": tenant, "type": job_type, "policy": policy, "body": body},
        )
    ).scalar_one()
    return applied


async def load_recommendation(
    conn: AsyncConnection, rec_id: UUID, tenant: str
) -> tuple[str, dict[str, Any]] | None:
    """(job type, policy) of a tenant's recommendation, locked for apply."""
    row = (
        await conn.execute(
            text(
                "SELECT job_type, policy FROM analyzer_recommendations"
                " WHERE id = :id AND tenant_id = :tenant FOR UPDATE"
            ),
            {"id": rec_id, "tenant": tenant},
        )
    ).one_or_none()
    return None if row is None else (row.job_type, row.policy)


_APPLY_POLICY = text(
    "INSERT INTO job_type_policies"
    " (tenant_id, type, max_attempts, backoff, non_retryable_errors, source, updated_at)"
    " VALUES (:tenant, :type, :max_attempts, :backoff, :non_retryable, 'analyzer', now())"
    " ON CONFLICT (tenant_id, type) DO UPDATE SET max_attempts = EXCLUDED.max_attempts,"
    " backoff = EXCLUDED.backoff, non_retryable_errors = EXCLUDED.non_retryable_errors,"
    " source = EXCLUDED.source, updated_at = EXCLUDED.updated_at"
    " RETURNING updated_at"
).bindparams(bindparam("backoff", type_=JSONB))


async def apply_policy(
    conn: AsyncConnection, rec_id: UUID, tenant: str, job_type: str, policy: dict[str, Any]
) -> datetime:
    """Write a recommended policy as the job type's default and mark it applied."""
    updated: datetime = (
        await conn.execute(
            _APPLY_POLICY,
            {
                "tenant": tenant,
                "type": job_type,
                "max_attempts": policy["max_attempts"],
                "backoff": policy["backoff"],
                "non_retryable": list(policy["non_retryable_errors"]),
            },
        )
    ).scalar_one()
    await conn.execute(
        text("UPDATE analyzer_recommendations SET applied_at = :at WHERE id = :id"),
        {"at": updated, "id": rec_id},
    )
    return updated
