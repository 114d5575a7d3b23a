"""The database schema in code: SQLAlchemy Core tables, the single description queries use.

The migrations in ``jobline/migrations`` create exactly this schema, and the migration test
compares the two. What Core cannot express lives only in the migration: the outbox's
``jobline_outbox_notify()`` function and its statement-level ``AFTER INSERT`` trigger, which
wakes the relay through ``pg_notify('jobline_outbox', '')``.

Conventions:

- Every constraint is named through :data:`NAMING_CONVENTION`, so the names alembic writes and
  the names PostgreSQL reports agree. Indexes are named by hand (they hold DESC expressions).
- Timestamps are ``timestamptz``; ``created_at``/``updated_at`` default to ``now()`` (the
  transaction's start time).
- Tenant-owned rows cascade when their tenant is deleted: removing a tenant removes its data.
  Every such foreign key is the leading column of some index, so the cascade does not scan.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import TextClause

from jobline.core.job import AttemptOutcome, JobState
from jobline.core.schedules import MisfirePolicy, OverlapPolicy

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata: Final = MetaData(naming_convention=NAMING_CONVENTION)

# Allowed values of the CHECK-constrained text columns, taken from the enums that own their
# meaning. The migrations write them literally (a migration must not change with the code);
# the migration test compares the migrated CHECK constraints with these.
JOB_STATES: Final = tuple(s.value for s in JobState)
ATTEMPT_OUTCOMES: Final = tuple(o.value for o in AttemptOutcome)
MISFIRE_POLICIES: Final = tuple(p.value for p in MisfirePolicy)
OVERLAP_POLICIES: Final = tuple(p.value for p in OverlapPolicy)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now() -> TextClause:
    return text("now()")


def _created_at() -> Column[datetime]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now())


def _updated_at() -> Column[datetime]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now())


def _tenant_fk() -> ForeignKey:
    return ForeignKey("tenants.id", ondelete="CASCADE")


_NEW_UUID = text("gen_random_uuid()")  # built in since PostgreSQL 13
_EMPTY_OBJECT = text("'{}'::jsonb")
_EMPTY_LIST = text("'[]'::jsonb")
_EMPTY_TEXT_ARRAY = text("'{}'::text[]")


tenants: Final = Table(
    "tenants",
    metadata,
    Column("id", Text, primary_key=True),  # a slug, e.g. "acme"
    Column("name", Text, nullable=False),
    _created_at(),
)

api_keys: Final = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=_NEW_UUID),
    Column("tenant_id", Text, _tenant_fk(), nullable=False),
    Column("name", Text, nullable=False),
    # The non-secret part of the presented key: the gateway finds the row by it (the unique
    # constraint is that lookup's index), then compares key_hash in constant time.
    Column("prefix", Text, nullable=False, unique=True),
    Column("key_hash", Text, nullable=False),  # sha256 hex of the secret part
    Column("scopes", ARRAY(Text), nullable=False),
    _created_at(),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    # Listing a tenant's keys, and the ON DELETE CASCADE from tenants.
    Index("ix_api_keys_tenant_id", "tenant_id"),
)

schedules: Final = Table(
    "schedules",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=_NEW_UUID),
    Column("tenant_id", Text, _tenant_fk(), nullable=False),
    Column("name", Text, nullable=False),
    Column("cron", Text),
    Column("timezone", Text, nullable=False, server_default=text("'UTC'")),
    Column("interval_seconds", Double),
    Column("job_template", JSONB, nullable=False),
    Column("misfire_policy", Text, nullable=False, server_default=text("'skip'")),
    Column("catch_up_limit", Integer, nullable=False, server_default=text("100")),
    Column("overlap_policy", Text, nullable=False, server_default=text("'allow'")),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("start_at", DateTime(timezone=True)),
    Column("end_at", DateTime(timezone=True)),
    Column("next_fire_at", DateTime(timezone=True)),
    Column("last_fired_at", DateTime(timezone=True)),
    _created_at(),
    _updated_at(),
    # Names are per tenant; the index also serves tenant listings and the tenant cascade.
    UniqueConstraint("tenant_id", "name"),
    CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="cron_xor_interval"),
    CheckConstraint("interval_seconds IS NULL OR interval_seconds > 0", name="interval_positive"),
    CheckConstraint("catch_up_limit >= 0", name="catch_up_limit_nonnegative"),
    CheckConstraint(_in("misfire_policy", MISFIRE_POLICIES), name="misfire_policy"),
    CheckConstraint(_in("overlap_policy", OVERLAP_POLICIES), name="overlap_policy"),
    # The relay's due-schedule claim: WHERE NOT paused AND next_fire_at <= now()
    # ORDER BY next_fire_at ... FOR UPDATE SKIP LOCKED. Partial, so paused and finished
    # schedules cost nothing.
    Index(
        "ix_schedules_due",
        "next_fire_at",
        postgresql_where=text("NOT paused AND next_fire_at IS NOT NULL"),
    ),
)

jobs: Final = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=_NEW_UUID),
    Column("tenant_id", Text, _tenant_fk(), nullable=False),
    Column("type", Text, nullable=False),
    Column("queue", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("payload", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=_EMPTY_OBJECT),
    Column("attempt", Integer, nullable=False, server_default=text("0")),  # attempts started
    Column("max_attempts", Integer, nullable=False),
    # The attempt number at which the current retry budget began (redrive and hand-back move
    # it), so attempts left = max_attempts - (attempt - budget_start).
    Column("budget_start", Integer, nullable=False, server_default=text("0")),
    Column("backoff", JSONB, nullable=False),  # {kind, base_seconds, max_seconds}
    Column("timeout_seconds", Double, nullable=False),
    Column("run_at", DateTime(timezone=True), nullable=False, server_default=_now()),  # due
    _created_at(),
    _updated_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("sequence", Integer, nullable=False, server_default=text("0")),  # last event number
    Column("result", JSONB),
    Column("last_error", JSONB),
    Column("errors", JSONB, nullable=False, server_default=_EMPTY_LIST),  # one per attempt
    Column("schedule_id", Uuid, ForeignKey("schedules.id", ondelete="SET NULL")),
    Column("fire_time", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("traceparent", Text),  # W3C trace context carried to the worker
    Column("purge_after", DateTime(timezone=True)),  # retention of finished jobs
    CheckConstraint(_in("state", JOB_STATES), name="state"),
    CheckConstraint("attempt >= 0 AND budget_start >= 0", name="attempt_nonnegative"),
    CheckConstraint("max_attempts >= 1", name="max_attempts_positive"),
    CheckConstraint("timeout_seconds > 0", name="timeout_positive"),
    # One job per schedule fire time: the scheduler's safety net behind its row lock (a second
    # job for one tick fails). Partial: only scheduled jobs are in it, so the many jobs that
    # are not add nothing to it on every insert and update (a unique constraint would index
    # their NULLs too).
    Index(
        "uq_jobs_schedule_id_fire_time",
        "schedule_id",
        "fire_time",
        unique=True,
        postgresql_where=text("schedule_id IS NOT NULL"),
    ),
    # The gateway's default listing, newest first, with a keyset cursor on (created_at, id).
    Index("ix_jobs_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
    # The same listing filtered by state (e.g. "my dead jobs").
    Index(
        "ix_jobs_tenant_state_created",
        "tenant_id",
        "state",
        text("created_at DESC"),
        text("id DESC"),
    ),
    # The same listing filtered by job type.
    Index(
        "ix_jobs_tenant_type_created",
        "tenant_id",
        "type",
        text("created_at DESC"),
        text("id DESC"),
    ),
    # The lease rescuer: WHERE state = 'running' AND lease_expires_at < now(). Only running
    # jobs carry a live lease, so the partial index stays as small as the in-flight set.
    Index(
        "ix_jobs_running_lease",
        "lease_expires_at",
        postgresql_where=text("state = 'running'"),
    ),
    # A schedule's recent runs (and overlap_policy's "is one still running?"); also covers the
    # ON DELETE SET NULL from schedules. Most jobs have no schedule, hence partial.
    Index(
        "ix_jobs_schedule_created",
        "schedule_id",
        text("created_at DESC"),
        postgresql_where=text("schedule_id IS NOT NULL"),
    ),
    # The retention purge: WHERE purge_after < now(). Only finished jobs have one.
    Index(
        "ix_jobs_purge_after",
        "purge_after",
        postgresql_where=text("purge_after IS NOT NULL"),
    ),
)

idempotency_keys: Final = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", Text, _tenant_fk(), nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),  # a reused key with another body is a 422
    Column("job_ids", ARRAY(Uuid), nullable=False),  # a batch submission owns several jobs
    Column("response", JSONB),
    _created_at(),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # The primary key is the concurrency guard: submissions race on
    # INSERT ... ON CONFLICT (tenant_id, key) DO NOTHING, and exactly one wins. Never
    # check-then-insert.
    PrimaryKeyConstraint("tenant_id", "key"),
    # The purge: DELETE ... WHERE expires_at < now().
    Index("ix_idempotency_keys_expires_at", "expires_at"),
)

job_attempts: Final = Table(
    "job_attempts",
    metadata,
    Column("job_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=_now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("error", JSONB),
    # Also the index for a job's attempt history and for the cascade from jobs.
    PrimaryKeyConstraint("job_id", "attempt"),
    CheckConstraint(
        f"outcome IS NULL OR {_in('outcome', ATTEMPT_OUTCOMES)}",
        name="outcome",
    ),
)

outbox: Final = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # For per-job ordering, tracing and tests; no foreign key, so the hot insert path checks
    # nothing and purging a job never waits on its unpublished rows.
    Column("job_id", Uuid),
    Column("key", Text),
    # When the relay may publish the row: delays (run_at, retry backoff) live here.
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=_now()),
    _created_at(),
    # The messages of one transition that fall due together, in order: logical topics
    # ("events", "jobs.<queue>", "jobs.dlq") and their values, one each.
    Column("topics", ARRAY(Text)),
    Column("payloads", ARRAY(LargeBinary)),
    # A delayed work message for this attempt: publishing it makes the job queued.
    Column("due_attempt", Integer),
    # The one-message form written before migration 0003 (kept until no process of that
    # version is left; the relay publishes both forms).
    Column("topic", Text),
    Column("value", LargeBinary),
    Column("headers", JSONB, nullable=False, server_default=_EMPTY_OBJECT),
    CheckConstraint(
        "(topics IS NOT NULL AND payloads IS NOT NULL)"
        " OR (topic IS NOT NULL AND value IS NOT NULL)",
        name="one_form",
    ),
    # The relay's claim: WHERE available_at <= now() ORDER BY available_at, id LIMIT n
    # FOR UPDATE SKIP LOCKED. The index yields rows in claim order, so the scan stops after
    # n unlocked due rows instead of sorting the whole backlog.
    Index("ix_outbox_available_at_id", "available_at", "id"),
    # The claim's per-job order check: is an older due row of this job still here?
    Index("ix_outbox_job_id_id", "job_id", "id"),
)

job_type_policies: Final = Table(
    "job_type_policies",
    metadata,
    Column("tenant_id", Text, _tenant_fk(), nullable=False),
    Column("type", Text, nullable=False),
    Column("max_attempts", Integer),
    Column("backoff", JSONB),
    Column("non_retryable_errors", ARRAY(Text), nullable=False, server_default=_EMPTY_TEXT_ARRAY),
    Column("source", Text, nullable=False),  # who set it, e.g. "api" or "analyzer"
    _updated_at(),
    # The submit path's lookup of a tenant's defaults for a job type.
    PrimaryKeyConstraint("tenant_id", "type"),
    CheckConstraint("max_attempts IS NULL OR max_attempts >= 1", name="max_attempts_positive"),
)


# --- the AI analyzer's own tables (migration 0002) -------------------------------------
# Derived from jobline.events, so they carry no foreign keys: ingest must never fail because
# a tenant or job was deleted meanwhile, and a replay from the earliest offset rebuilds them.
# Histogram columns hold counts per fixed log-spaced bucket (jobline_analyzer.histogram), so
# two rollups merge by element-wise addition.

_EMPTY_INT_ARRAY = text("'{}'::integer[]")

analyzer_seen_events: Final = Table(
    "analyzer_seen_events",
    metadata,
    # CloudEvent id "<job_id>:<sequence>": inserted in the rollup's transaction, so an event
    # delivered twice counts once (INSERT ... ON CONFLICT DO NOTHING RETURNING).
    Column("event_id", Text, primary_key=True),
    Column("seen_at", DateTime(timezone=True), nullable=False, server_default=_now()),
    # The retention prune: DELETE ... WHERE seen_at < cutoff.
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
    _updated_at(),
    PrimaryKeyConstraint("tenant_id", "job_type"),
)

analyzer_findings: Final = Table(
    "analyzer_findings",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=_NEW_UUID),
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
    _created_at(),
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
    _created_at(),
    _updated_at(),
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

# Tables in creation order (each after those it references).
ALL_TABLES: Final = (
    tenants,
    api_keys,
    schedules,
    jobs,
    idempotency_keys,
    job_attempts,
    outbox,
    job_type_policies,
    *ANALYZER_TABLES,
)
