"""The AI analyzer's own tables (migration 0002).

Derived from jobline.events, so they carry no foreign keys: ingest must never fail because
a tenant or job was deleted meanwhile, and a replay from the earliest offset rebuilds them.
Histogram columns hold counts per fixed log-spaced bucket (jobline_analyzer.histogram), so
two rollups merge by element-wise addition.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from jobline.pg.tables.conventions import NEW_UUID, created_at, metadata, now, updated_at

_EMPTY_INT_ARRAY = text("'{}'::integer[]")

analyzer_seen_events: Final = Table(
    "analyzer_seen_events",
    metadata,
    # CloudEvent id "<job_id>:<sequence>": inserted in the rollup's transaction, so an event
    # delivered twice counts once (INSERT ... ON CONFLICT DO NOTHING RETURNING).
    Column("event_id", Text, primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=now()),
    # The retention purge: WHERE seen_at < cutoff ORDER BY seen_at LIMIT n.
    Index("ix_analyzer_seen_events_seen_at", "seen_at"),
)

analyzer_rollups: Final = Table(
    "analyzer_rollups",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("bucket", DateTime(timezone=True), nullable=False),  # start of the minute
    Column("submitted", Integer, nullable=False, server_default=text("0")),
    Column("started", Integer, nullable=False, server_default=text("0")),
    Column("succeeded", Integer, nullable=False, server_default=text("0")),
    Column("retried", Integer, nullable=False, server_default=text("0")),
    Column("dead", Integer, nullable=False, server_default=text("0")),
    Column("cancelled", Integer, nullable=False, server_default=text("0")),
    Column("run_hist", ARRAY(Integer), nullable=False, server_default=_EMPTY_INT_ARRAY),
    Column("run_sum", Double, nullable=False, server_default=text("0")),
    Column("wait_hist", ARRAY(Integer), nullable=False, server_default=_EMPTY_INT_ARRAY),
    Column("wait_sum", Double, nullable=False, server_default=text("0")),
    # The detection loop reads one series' closed minutes in order: the key is that range scan.
    PrimaryKeyConstraint("tenant_id", "job_type", "bucket"),
    # Finding series that have recent rollups but no detector state yet.
    Index("ix_analyzer_rollups_bucket", "bucket"),
)

analyzer_error_rollups: Final = Table(
    "analyzer_error_rollups",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("bucket", DateTime(timezone=True), nullable=False),
    Column("fingerprint", Text, nullable=False),  # 16 hex chars of the error class
    Column("error_class", Text, nullable=False),  # readable: "KeyError: order <n> not found"
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("tenant_id", "job_type", "bucket", "fingerprint"),
    # The retention purge: WHERE bucket < cutoff ORDER BY bucket LIMIT n (migration 0007).
    Index("ix_analyzer_error_rollups_bucket", "bucket"),
)

analyzer_jobs: Final = Table(
    "analyzer_jobs",
    metadata,
    Column("job_id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("sequence", Integer, nullable=False),  # of the event that set `state`
    Column("max_attempts", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),  # that event's time
    # Recommendations read a type's recent jobs: WHERE tenant_id = ? AND job_type = ?
    # AND updated_at >= ? ORDER BY updated_at DESC LIMIT n.
    Index(
        "ix_analyzer_jobs_tenant_type_updated",
        "tenant_id",
        "job_type",
        text("updated_at DESC"),
    ),
    # The retention purge: WHERE updated_at < cutoff ORDER BY updated_at LIMIT n (0007).
    Index("ix_analyzer_jobs_updated_at", "updated_at"),
)

analyzer_attempts: Final = Table(
    "analyzer_attempts",
    metadata,
    Column("job_id", Uuid, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", Text),  # NULL while running; succeeded | failed | cancelled | handed_back
    Column("error_class", Text),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("job_id", "attempt"),
)

analyzer_detector_state: Final = Table(
    "analyzer_detector_state",
    metadata,
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("last_bucket", DateTime(timezone=True), nullable=False),  # last minute fed
    Column("state", JSONB, nullable=False),  # every detector's to_state()
    updated_at(),
    PrimaryKeyConstraint("tenant_id", "job_type"),
)

analyzer_findings: Final = Table(
    "analyzer_findings",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("window_end", DateTime(timezone=True), nullable=False),
    Column("baseline", Double, nullable=False),
    Column("observed", Double, nullable=False),
    Column("score", Double, nullable=False),
    Column("explanation", Text, nullable=False),
    Column("error_class", Text),
    created_at(),
    Column("published_at", DateTime(timezone=True)),  # on jobline.insights
    # GET /v1/insights/anomalies: a tenant's findings newest first, keyset on (created_at, id).
    Index(
        "ix_analyzer_findings_tenant_created",
        "tenant_id",
        text("created_at DESC"),
        text("id DESC"),
    ),
    # The publisher's backlog: findings not yet on the insights topic.
    Index(
        "ix_analyzer_findings_unpublished",
        "created_at",
        postgresql_where=text("published_at IS NULL"),
    ),
    # The retention purge of published findings by age (0007); unpublished ones are kept.
    Index(
        "ix_analyzer_findings_published_created",
        "created_at",
        postgresql_where=text("published_at IS NOT NULL"),
    ),
)

analyzer_recommendations: Final = Table(
    "analyzer_recommendations",
    metadata,
    # uuid5 of (tenant, type, policy): the same advice keeps its id, so apply applies exactly
    # what was shown.
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("job_type", Text, nullable=False),
    Column("policy", JSONB, nullable=False),  # {max_attempts, backoff, non_retryable_errors}
    Column("body", JSONB, nullable=False),  # the whole recommendation as the API shows it
    created_at(),
    updated_at(),
    Column("applied_at", DateTime(timezone=True)),
    Index("ix_analyzer_recommendations_tenant_type", "tenant_id", "job_type"),
)

ANALYZER_TABLES: Final = (
    analyzer_seen_events,
    analyzer_rollups,
    analyzer_error_rollups,
    analyzer_jobs,
    analyzer_attempts,
    analyzer_detector_state,
    analyzer_findings,
    analyzer_recommendations,
)
