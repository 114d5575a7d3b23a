-- The hot-path statements of Jobline, by name (loaded by jobline/queries.py).
-- Parameters use SQLAlchemy's :name style. Each block says why its locks and indexes are there.

-- name: insert_job
-- A new job; its outbox rows are written in the same transaction (insert_outbox).
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
