-- The hot-path statements of Jobline, by name (loaded by jobline/queries.py).
-- Parameters use SQLAlchemy's :name style. Each block says why its locks and indexes are there.

-- name: insert_job
-- A new job; its outbox rows are written in the same transaction (insert_outbox).
-- The single-row form: jobstore.insert uses insert_jobs (jobs and outbox in one statement).
INSERT INTO jobs (
    id, tenant_id, type, queue, state, priority, payload, metadata, attempt, max_attempts,
    budget_start, backoff, timeout_seconds, run_at, created_at, updated_at, sequence,
    schedule_id, fire_time, idempotency_key, traceparent
) VALUES (
    :id, :tenant_id, :type, :queue, :state, :priority, :payload, :metadata, :attempt,
    :max_attempts, :budget_start, :backoff, :timeout_seconds, :run_at, :created_at, :created_at,
    :sequence, :schedule_id, :fire_time, :idempotency_key, :traceparent
)

-- name: insert_outbox
-- The only way anything reaches Kafka. available_at is the delay: the relay skips rows that
-- are not yet due, so delayed jobs and retry backoff share this one durable mechanism.
-- The statement-level trigger notifies the relay once per statement (folded per transaction).
-- The single-row form: outbox.write uses insert_outbox_rows (one statement for all rows).
INSERT INTO outbox (topic, key, value, available_at, job_id)
VALUES (:topic, :key, :value, :available_at, :job_id)

-- name: lock_job
-- Every transition reads the row under FOR UPDATE first: concurrent writers to one job
-- (a worker finishing, a cancel, the lease rescuer) serialise here, and the pure state
-- machine decides on the row as it is now. Plain FOR UPDATE, not SKIP LOCKED: the relay
-- holds this lock while it publishes a delayed job's message, and a worker that received
-- that message must wait the few milliseconds rather than drop it.
SELECT * FROM jobs WHERE id = :id FOR UPDATE

-- name: lock_tenant_job
-- The gateway's variant: another tenant's job does not exist (404, never 403).
SELECT * FROM jobs WHERE id = :id AND tenant_id = :tenant_id FOR UPDATE

-- name: save_job
-- The guarded write of a transition: only if the row is still in the state and attempt the
-- transition was computed from. Zero rows means someone else moved it: the caller drops its
-- outbox rows by rolling back.
UPDATE jobs SET
    state = :state,
    attempt = :attempt,
    budget_start = :budget_start,
    run_at = :run_at,
    updated_at = now(),
    started_at = :started_at,
    finished_at = :finished_at,
    lease_owner = :lease_owner,
    lease_expires_at = :lease_expires_at,
    cancel_requested_at = :cancel_requested_at,
    sequence = :sequence,
    result = :result,
    last_error = :last_error,
    errors = :errors,
    purge_after = :purge_after
WHERE id = :id AND state = :expected_state AND attempt = :expected_attempt

-- name: start_attempt
-- One row per attempt; ON CONFLICT because a redelivered claim that lost its race must not
-- fail the transaction of the one that won (the guard on jobs already decided).
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at)
VALUES (:job_id, :attempt, :worker_id, :started_at)
ON CONFLICT (job_id, attempt) DO NOTHING

-- name: finish_attempt
UPDATE job_attempts SET finished_at = :finished_at, outcome = :outcome, error = :error
WHERE job_id = :job_id AND attempt = :attempt AND finished_at IS NULL

-- name: renew_lease
-- The heartbeat. Guarded on owner and attempt so a worker whose job was rescued (its lease
-- expired and another attempt started) learns it lost the job: zero rows.
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
WHERE id = :id AND state = 'running' AND attempt = :attempt AND lease_owner = :worker_id
RETURNING cancel_requested_at

-- name: expired_leases
-- The lease rescuer's scan: ix_jobs_running_lease is partial on state = 'running', so this
-- reads only running jobs. SKIP LOCKED: several relays rescue in parallel without waiting
-- on each other or on a worker that is finishing the job right now.
SELECT id FROM jobs
WHERE state = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: lock_jobs
-- The worker's batch variant of lock_job: every job of one fetched batch (or one group of
-- outcomes) under FOR UPDATE in one round trip. ORDER BY id makes every batch take its locks
-- in the same order (LockRows sits above the Sort), so two batches that share jobs queue
-- behind each other instead of deadlocking. Plain FOR UPDATE for the reason lock_job gives.
SELECT * FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE

-- name: save_jobs
-- The set-based save_job: one row per transition, from arrays (unnest), so the statement text
-- is the same for any batch size and stays prepared once per connection. Each row carries
-- its own guard (expected_state, expected_attempt) exactly like save_job; the caller compares
-- the row count with the rows it sent and rolls the whole batch back on a mismatch. jsonb
-- values arrive as JSON text (a jsonb[] parameter would need a per-element codec).
UPDATE jobs AS j SET
    state = v.state,
    attempt = v.attempt,
    budget_start = v.budget_start,
    run_at = v.run_at,
    updated_at = now(),
    started_at = v.started_at,
    finished_at = v.finished_at,
    lease_owner = v.lease_owner,
    lease_expires_at = v.lease_expires_at,
    cancel_requested_at = v.cancel_requested_at,
    sequence = v.sequence,
    result = CAST(v.result AS jsonb),
    last_error = CAST(v.last_error AS jsonb),
    errors = CAST(v.errors AS jsonb),
    purge_after = v.purge_after
FROM unnest(
    CAST(:ids AS uuid[]), CAST(:states AS text[]), CAST(:attempts AS int[]),
    CAST(:budget_starts AS int[]), CAST(:run_ats AS timestamptz[]),
    CAST(:started_ats AS timestamptz[]), CAST(:finished_ats AS timestamptz[]),
    CAST(:lease_owners AS text[]), CAST(:lease_expires_ats AS timestamptz[]),
    CAST(:cancel_requested_ats AS timestamptz[]), CAST(:sequences AS int[]),
    CAST(:results_json AS text[]), CAST(:last_errors_json AS text[]),
    CAST(:errors_json AS text[]), CAST(:purge_afters AS timestamptz[]),
    CAST(:expected_states AS text[]), CAST(:expected_attempts AS int[])
) AS v(
    id, state, attempt, budget_start, run_at, started_at, finished_at, lease_owner,
    lease_expires_at, cancel_requested_at, sequence, result, last_error, errors, purge_after,
    expected_state, expected_attempt
)
WHERE j.id = v.id AND j.state = v.expected_state AND j.attempt = v.expected_attempt

-- name: start_attempts
-- start_attempt for a batch of claims (same ON CONFLICT reasoning).
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at)
SELECT * FROM unnest(
    CAST(:job_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
    CAST(:started_ats AS timestamptz[])
)
ON CONFLICT (job_id, attempt) DO NOTHING

-- name: finish_attempts
-- finish_attempt for a batch of outcomes; error is JSON text per row (see save_jobs).
UPDATE job_attempts AS a SET
    finished_at = v.finished_at, outcome = v.outcome, error = CAST(v.error AS jsonb)
FROM unnest(
    CAST(:job_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:finished_ats AS timestamptz[]),
    CAST(:outcomes AS text[]), CAST(:errors_json AS text[])
) AS v(job_id, attempt, finished_at, outcome, error)
WHERE a.job_id = v.job_id AND a.attempt = v.attempt AND a.finished_at IS NULL

-- name: insert_outbox_rows
-- insert_outbox for any number of rows in one statement (one trigger run, one round trip,
-- one prepared statement whatever the count). WITH ORDINALITY + ORDER BY keeps the ids in
-- the order given: a job's messages (its event, then its work message) and the events of
-- consecutive transitions must leave the outbox in the order they were written.
INSERT INTO outbox (topic, key, value, available_at, job_id)
SELECT v.topic, v.key, v.value, v.available_at, v.job_id
FROM unnest(
    CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:msg_values AS bytea[]),
    CAST(:available_ats AS timestamptz[]), CAST(:job_ids AS uuid[])
) WITH ORDINALITY AS v(topic, key, value, available_at, job_id, n)
ORDER BY v.n

-- name: insert_jobs
-- insert_job + insert_outbox_rows for any number of new jobs, in one statement: one round
-- trip and one prepared statement per submission, whatever its size (a batch of 1,000 was
-- 1,000 executions of insert_job). Arrays in, one row per element (unnest); jsonb values come
-- as JSON text. The outbox rows keep the given order (see insert_outbox_rows). The jobs'
-- constraints (tenant, unique schedule fire time) raise exactly as insert_job's do.
WITH new_jobs AS (
    INSERT INTO jobs (
        id, tenant_id, type, queue, state, priority, payload, metadata, attempt, max_attempts,
        budget_start, backoff, timeout_seconds, run_at, created_at, updated_at, sequence,
        schedule_id, fire_time, idempotency_key, traceparent
    )
    SELECT
        v.id, v.tenant_id, v.type, v.queue, v.state, v.priority, CAST(v.payload AS jsonb),
        CAST(v.metadata AS jsonb), v.attempt, v.max_attempts, v.budget_start,
        CAST(v.backoff AS jsonb), v.timeout_seconds, v.run_at, v.created_at, v.created_at,
        v.sequence, CAST(:schedule_id AS uuid), CAST(:fire_time AS timestamptz),
        CAST(:idempotency_key AS text), v.traceparent
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:tenant_ids AS text[]), CAST(:types AS text[]),
        CAST(:queues AS text[]), CAST(:states AS text[]), CAST(:priorities AS smallint[]),
        CAST(:payloads_json AS text[]), CAST(:metadata_json AS text[]),
        CAST(:attempts AS int[]), CAST(:max_attempts_list AS int[]),
        CAST(:budget_starts AS int[]), CAST(:backoffs_json AS text[]),
        CAST(:timeouts AS float8[]), CAST(:run_ats AS timestamptz[]),
        CAST(:created_ats AS timestamptz[]), CAST(:sequences AS int[]),
        CAST(:traceparents AS text[])
    ) AS v(
        id, tenant_id, type, queue, state, priority, payload, metadata, attempt, max_attempts,
        budget_start, backoff, timeout_seconds, run_at, created_at, sequence, traceparent
    )
)
INSERT INTO outbox (topic, key, value, available_at, job_id)
SELECT m.topic, m.key, m.value, m.available_at, m.job_id
FROM unnest(
    CAST(:topics AS text[]), CAST(:keys AS text[]), CAST(:msg_values AS bytea[]),
    CAST(:available_ats AS timestamptz[]), CAST(:job_ids AS uuid[])
) WITH ORDINALITY AS m(topic, key, value, available_at, job_id, n)
ORDER BY m.n

-- name: claim_outbox
-- The relay's claim: due rows, oldest first, through ix_outbox_due (available_at, id).
-- SKIP LOCKED lets any number of relays drain in parallel, each taking rows no other holds;
-- no cursor over ids, so a transaction that commits late is simply picked up later.
SELECT id, topic, key, value, job_id FROM outbox
WHERE available_at <= now()
ORDER BY available_at, id
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: delete_outbox
-- After the broker acknowledged every message of the batch. The rows are still locked by
-- this transaction, so nobody else published them meanwhile.
DELETE FROM outbox WHERE id = ANY(:ids)

-- name: delayed_jobs_of_batch
-- Jobs whose delayed work message is being published now: they become queued in the same
-- transaction (scheduled | retrying -> queued). Locked so the flip and the publish commit
-- together.
SELECT * FROM jobs
WHERE id = ANY(:ids) AND state IN ('scheduled', 'retrying')
FOR UPDATE

-- name: outbox_backlog
-- For the relay's gauges: rows due now and the age of the oldest.
SELECT count(*) AS due, EXTRACT(EPOCH FROM (now() - min(available_at))) AS oldest_age_seconds
FROM outbox WHERE available_at <= now()

-- name: outbox_next_due
-- When an idle relay should look again: seconds until the earliest row that is not yet due
-- (a delayed job's run_at, a retry's backoff). Reads the first entry of ix_outbox_available_at_id
-- past now(), so it costs one index probe however long the backlog. The database's clock
-- decides, like claim_outbox does, so the relay's own clock skew does not matter.
SELECT EXTRACT(EPOCH FROM (min(available_at) - now())) AS seconds
FROM outbox WHERE available_at > now()

-- name: claim_due_schedules
-- The scheduler's claim (outbox-relay/scheduler.py): schedules whose next planned time has
-- come, oldest first, through the partial index ix_schedules_due (next_fire_at WHERE NOT paused
-- AND next_fire_at IS NOT NULL), so paused and finished schedules cost nothing and the scan
-- stops after :limit unlocked rows. SKIP LOCKED lets any number of relays fire in parallel,
-- each taking schedules no other holds; the lock is held until the fired jobs and the new
-- next_fire_at commit together, so a schedule is never planned twice from the same state.
-- now() is returned so the planner uses the database's clock, the one that decided "due".
SELECT *, now() AS db_now FROM schedules
WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= now()
ORDER BY next_fire_at
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- name: schedule_has_active_job
-- overlap_policy skip_if_running: is a job of this schedule unfinished? ix_jobs_schedule_created
-- leads with schedule_id, so this reads only this schedule's jobs (and stops at the first hit).
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE schedule_id = :schedule_id AND state IN ('queued', 'scheduled', 'running', 'retrying')
) AS active

-- name: schedule_type_policy
-- The tenant's defaults for the template's job type (primary-key probe), applied to a fired
-- job the way the gateway applies them to a submitted one.
SELECT max_attempts, backoff FROM job_type_policies
WHERE tenant_id = :tenant_id AND type = :type

-- name: advance_schedule
-- Written in the claim's transaction, with the schedule's row still locked by it. The fired
-- jobs and this move commit together: a crash before the commit fires again from the old
-- next_fire_at, and UNIQUE (schedule_id, fire_time) on jobs turns any repeat into a no-op.
UPDATE schedules SET
    next_fire_at = :next_fire_at,
    last_fired_at = coalesce(:last_fired_at, last_fired_at),
    updated_at = now()
WHERE id = :id

-- name: schedules_next_due
-- When an idle scheduler should look again: seconds until the earliest unpaused next_fire_at.
-- min() over the partial index ix_schedules_due is its first entry: one index probe. The
-- database's clock decides, as in the claim, so the relay's own clock skew does not matter.
SELECT EXTRACT(EPOCH FROM (min(next_fire_at) - now())) AS seconds
FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL
