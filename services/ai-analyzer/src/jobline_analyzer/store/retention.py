"""The analyzer's retention statements: one batch of due rows per call, per table.

Each batch runs in its own short transaction (:mod:`jobline_analyzer.retention` drives them
through :class:`jobline.pg.purge.Purger`) and follows one pattern: pick up to ``:limit`` due
rows through an index on the age column, oldest first (migration 0007 added the indexes that
were missing), so a batch reads about ``:limit`` rows however large the table; lock them
``FOR UPDATE SKIP LOCKED`` (a row the ingest or the detection loop holds is left for the next
round); then delete exactly those by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

# ix_analyzer_seen_events_seen_at.
_SEEN = text(
    "WITH doomed AS (SELECT event_id FROM analyzer_seen_events WHERE seen_at < :before"
    " ORDER BY seen_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " DELETE FROM analyzer_seen_events AS s USING doomed WHERE s.event_id = doomed.event_id"
)

# ix_analyzer_rollups_bucket.
_ROLLUPS = text(
    "WITH doomed AS (SELECT tenant_id, job_type, bucket FROM analyzer_rollups"
    " WHERE bucket < :before ORDER BY bucket LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " DELETE FROM analyzer_rollups AS r USING doomed WHERE r.tenant_id = doomed.tenant_id"
    " AND r.job_type = doomed.job_type AND r.bucket = doomed.bucket"
)

# ix_analyzer_error_rollups_bucket (0007).
_ERROR_ROLLUPS = text(
    "WITH doomed AS (SELECT tenant_id, job_type, bucket, fingerprint FROM analyzer_error_rollups"
    " WHERE bucket < :before ORDER BY bucket LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " DELETE FROM analyzer_error_rollups AS e USING doomed WHERE e.tenant_id = doomed.tenant_id"
    " AND e.job_type = doomed.job_type AND e.bucket = doomed.bucket"
    " AND e.fingerprint = doomed.fingerprint"
)

# ix_analyzer_jobs_updated_at (0007). A job's attempts go with it, in the same statement (the
# attempts' primary key starts with job_id). A late event for a purged job re-creates its
# rows with that event's (old) time, and the next round purges them again.
_JOBS = text(
    "WITH doomed AS (SELECT job_id FROM analyzer_jobs WHERE updated_at < :before"
    " ORDER BY updated_at LIMIT :limit FOR UPDATE SKIP LOCKED),"
    " attempts AS (DELETE FROM analyzer_attempts AS a USING doomed"
    " WHERE a.job_id = doomed.job_id RETURNING 1),"
    " gone AS (DELETE FROM analyzer_jobs AS j USING doomed WHERE j.job_id = doomed.job_id"
    " RETURNING 1)"
    " SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM attempts) AS attempts"
)

# ix_analyzer_findings_published_created (0007, partial: published findings only). An
# unpublished finding is kept whatever its age: the publisher still owes it to the topic.
_FINDINGS = text(
    "WITH doomed AS (SELECT id FROM analyzer_findings WHERE published_at IS NOT NULL"
    " AND created_at < :before ORDER BY created_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " DELETE FROM analyzer_findings AS f USING doomed WHERE f.id = doomed.id"
)

# One row per series, so a small table: the probe per row is the rollups' primary key. A
# series with no rollup since the cutoff has been fed only empty minutes all that time (so
# its updated_at is fresh and says nothing); its checkpoint goes, and the series starts
# afresh if it comes back. A new series is safe: it gets a checkpoint only from a rollup of
# the last analyzer_new_series_lookback_hours.
_IDLE_SERIES = text(
    "WITH doomed AS (SELECT tenant_id, job_type FROM analyzer_detector_state AS s"
    " WHERE NOT EXISTS (SELECT 1 FROM analyzer_rollups AS r"
    " WHERE r.tenant_id = s.tenant_id AND r.job_type = s.job_type AND r.bucket >= :before)"
    " LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " DELETE FROM analyzer_detector_state AS d USING doomed"
    " WHERE d.tenant_id = doomed.tenant_id AND d.job_type = doomed.job_type"
)

STATEMENTS: Final[Mapping[str, TextClause]] = {
    "analyzer_seen_events": _SEEN,
    "analyzer_rollups": _ROLLUPS,
    "analyzer_error_rollups": _ERROR_ROLLUPS,
    "analyzer_findings": _FINDINGS,
    "analyzer_detector_state": _IDLE_SERIES,
}
"""Single-table purges by table name (analyzer_jobs has its own: it takes the attempts too)."""


async def purge_rows(conn: AsyncConnection, table: str, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` rows of ``table`` older than ``before``; returns how many."""
    result = await conn.execute(STATEMENTS[table], {"before": before, "limit": limit})
    return int(result.rowcount or 0)


async def purge_jobs(conn: AsyncConnection, before: datetime, limit: int) -> dict[str, int]:
    """Delete up to ``limit`` job rows last updated before ``before``, with their attempts."""
    row = (await conn.execute(_JOBS, {"before": before, "limit": limit})).one()
    return {"analyzer_jobs": int(row.jobs), "analyzer_attempts": int(row.attempts)}


async def try_lock(conn: AsyncConnection, table: str) -> bool:
    """The table's purge lock for this transaction (one replica purges a table at a time)."""
    got = await conn.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"jobline-purge:{table}"},
    )
    return bool(got)
