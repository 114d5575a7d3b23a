"""Jobs and what hangs off them: their attempts, the idempotency keys of their submissions,
the outbox rows their transitions owe the broker, and a tenant's defaults per job type.

What Core cannot express lives only in the migration: the outbox's
``jobline_outbox_notify()`` function and its statement-level ``AFTER INSERT`` trigger, which
wakes the relay through ``pg_notify('jobline_outbox', '')``.
"""

from __future__ import annotations

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
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from jobline.core.job import AttemptOutcome, JobState
from jobline.pg.tables.conventions import (
    EMPTY_LIST,
    EMPTY_OBJECT,
    EMPTY_TEXT_ARRAY,
    NEW_UUID,
    created_at,
    metadata,
    now,
    one_of,
    tenant_fk,
    updated_at,
)

# Allowed values of the CHECK-constrained state and outcome columns (see conventions).
JOB_STATES: Final = tuple(s.value for s in JobState)
ATTEMPT_OUTCOMES: Final = tuple(o.value for o in AttemptOutcome)


jobs: Final = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=NEW_UUID),
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("type", Text, nullable=False),
    Column("queue", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default=text("0")),
    Column("payload", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False, server_default=EMPTY_OBJECT),
    Column("attempt", Integer, nullable=False, server_default=text("0")),  # attempts started
    Column("max_attempts", Integer, nullable=False),
    # The attempt number at which the current retry budget began (redrive and hand-back move
    # it), so attempts left = max_attempts - (attempt - budget_start).
    Column("budget_start", Integer, nullable=False, server_default=text("0")),
    Column("backoff", JSONB, nullable=False),  # {kind, base_seconds, max_seconds}
    Column("timeout_seconds", Double, nullable=False),
    Column("run_at", DateTime(timezone=True), nullable=False, server_default=now()),  # due
    created_at(),
    updated_at(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("lease_owner", Text),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("cancel_requested_at", DateTime(timezone=True)),
    Column("sequence", Integer, nullable=False, server_default=text("0")),  # last event number
    Column("result", JSONB),
    Column("last_error", JSONB),
    Column("errors", JSONB, nullable=False, server_default=EMPTY_LIST),  # one per attempt
    Column("schedule_id", Uuid, ForeignKey("schedules.id", ondelete="SET NULL")),
    Column("fire_time", DateTime(timezone=True)),
    Column("idempotency_key", Text),
    Column("traceparent", Text),  # W3C trace context carried to the worker
    Column("purge_after", DateTime(timezone=True)),  # retention of finished jobs
    # Work messages the relay published again for this queued job, and when it last did
    # (healing from a broker that lost them: migration 0008).
    Column("heals", SmallInteger, nullable=False, server_default=text("0")),
    Column("healed_at", DateTime(timezone=True)),
    # At most one unfinished job per (tenant, unique_key): uq_jobs_unique_key (migration 0012).
    Column("unique_key", Text),
    # Workflow nodes (migration 0013): the workflow, the node's ref in it, and how many of its
    # parents have not ended yet (the fan-in counter; NULL for a job outside any workflow).
    Column("workflow_id", Uuid),
    Column("workflow_ref", Text),
    Column("pending_parents", Integer),
    # Limits (jobline.core.limits, migration 0014): the gate a held or released job waits
    # on, and the concurrency gate a running job counts in.
    Column("waiting_on", Text),
    Column("concurrency_key", Text),
    CheckConstraint(one_of("state", JOB_STATES), name="state"),
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
    # Unique jobs (jobline.core.unique): the guarantee, and the lookup of a key's holder.
    # Partial: jobs without a key, and finished jobs (their key is free again), are not in it.
    Index(
        "uq_jobs_unique_key",
        "tenant_id",
        "unique_key",
        unique=True,
        postgresql_where=text(
            "unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running', 'retrying')"
        ),
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
    # The healer: queued jobs that have waited longest. Only queued jobs are in it.
    Index(
        "ix_jobs_queued_since",
        "updated_at",
        postgresql_where=text("state = 'queued'"),
    ),
    # Tenant fairness: one queue's queued jobs per tenant (jobline.pg.fairness), counted only
    # while the queue has work parked or is near a window.
    Index(
        "ix_jobs_queued_queue_tenant",
        "queue",
        "tenant_id",
        postgresql_where=text("state = 'queued'"),
    ),
    # A gate's waiting jobs, best first, and the gates that have any (jobline_relay.gates).
    Index(
        "ix_jobs_waiting_on",
        "waiting_on",
        "priority",
        "created_at",
        postgresql_where=text("waiting_on IS NOT NULL AND state IN ('scheduled', 'queued')"),
    ),
    # A concurrency gate's running jobs: only running jobs with a gate are in it.
    Index(
        "ix_jobs_concurrency_running",
        "concurrency_key",
        postgresql_where=text("concurrency_key IS NOT NULL AND state = 'running'"),
    ),
    # A workflow's nodes (GET /v1/workflows/{id}, cancel). Most jobs are in none: partial.
    Index(
        "ix_jobs_workflow_id",
        "workflow_id",
        postgresql_where=text("workflow_id IS NOT NULL"),
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
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),  # a reused key with another body is a 422
    Column("job_ids", ARRAY(Uuid), nullable=False),  # a batch submission owns several jobs
    Column("response", JSONB),
    created_at(),
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
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=now()),
    Column("finished_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("error", JSONB),
    # Also the index for a job's attempt history and for the cascade from jobs.
    PrimaryKeyConstraint("job_id", "attempt"),
    CheckConstraint(
        f"outcome IS NULL OR {one_of('outcome', ATTEMPT_OUTCOMES)}",
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
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=now()),
    created_at(),
    # The messages of one transition that fall due together, in order: logical topics
    # ("events", "jobs.<queue>", "jobs.dlq") and their values, one each.
    Column("topics", ARRAY(Text)),
    Column("payloads", ARRAY(LargeBinary)),
    # A delayed work message for this attempt: publishing it makes the job queued.
    Column("due_attempt", Integer),
    # Lifecycle events only: the insert trigger sends no NOTIFY for it (migration 0004).
    Column("quiet", Boolean, nullable=False, server_default=false()),
    # The one-message form written before migration 0003 (kept until no process of that
    # version is left; the relay publishes both forms).
    Column("topic", Text),
    Column("value", LargeBinary),
    Column("headers", JSONB, nullable=False, server_default=EMPTY_OBJECT),
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

# Rows the broker refused for good (too large), moved out of the way with the reason so the
# rows behind them flow; kept for the operator (migration 0008).
outbox_set_aside: Final = Table(
    "outbox_set_aside",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("outbox_id", BigInteger, nullable=False),
    Column("job_id", Uuid),
    Column("key", Text),
    Column("topics", ARRAY(Text), nullable=False),
    Column("payloads", ARRAY(LargeBinary), nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_aside_at", DateTime(timezone=True), nullable=False, server_default=now()),
)

job_type_policies: Final = Table(
    "job_type_policies",
    metadata,
    Column("tenant_id", Text, tenant_fk(), nullable=False),
    Column("type", Text, nullable=False),
    Column("max_attempts", Integer),
    Column("backoff", JSONB),
    Column("non_retryable_errors", ARRAY(Text), nullable=False, server_default=EMPTY_TEXT_ARRAY),
    Column("source", Text, nullable=False),  # who set it, e.g. "api" or "analyzer"
    updated_at(),
    # The submit path's lookup of a tenant's defaults for a job type.
    PrimaryKeyConstraint("tenant_id", "type"),
    CheckConstraint("max_attempts IS NULL OR max_attempts >= 1", name="max_attempts_positive"),
)
