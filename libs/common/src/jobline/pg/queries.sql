-- The shared statements of Jobline, by name (loaded by jobline/pg/queries.py: ":name"
-- parameters become asyncpg's $n). Each block says why its locks and indexes are there.
-- jsonb parameters and columns are Python objects (the codec in jobline/pg/db.py), except in
-- arrays: an array of jsonb values comes as JSON text per element (text[], cast per row),
-- since asyncpg would read a JSON array element (a list) as one more array dimension.

-- ==== jobs: writes ======================================================================

-- name: insert_jobs
-- A submission in one statement (one round trip, its own transaction when run alone):
-- the job rows, their outbox rows and, when given, the Idempotency-Key claim. Arrays in, one
-- row per element (unnest), so the statement text is the same for 1 or 1,000 jobs and stays
-- prepared once per connection.
-- * api_key_id: the submitting key is checked here, in the statement that writes, so a key
--   revoked after the gateway's cached lookup fails on its very next request (0 rows, 401).
--   NULL for internal writers (the scheduler).
-- * idempotency_key is recorded on the jobs either way (a schedule's fire key, too); it is
--   claimed in idempotency_keys only when key_tenant is given (a client's Idempotency-Key).
-- * The key claim races on the primary key (tenant_id, key), never check-then-insert: a
--   second submission with the same key waits on the first one's uncommitted row, then sees
--   the conflict, claims nothing, and so inserts no job (the caller replays). An expired row
--   is overwritten in place (DO UPDATE ... WHERE expired).
-- * Outbox rows come flat (one element per message, msg_rows says which outbox row each
--   message belongs to) and are folded per row in SQL, because a multi-dimensional array
--   parameter must be rectangular. WITH ORDINALITY + ORDER BY keep rows and messages in the
--   order given: a job's events must leave the outbox in the order they were written.
-- * unique_keys: NULL for a job without `unique` (no entry in uq_jobs_unique_key, so such a
--   submission costs the same as before 0012). A job with a key that an unfinished job holds
--   fails the whole statement on uq_jobs_unique_key; the gateway takes the keys' locks and
--   decides first (lock_unique_keys, unique_holders), so that error means a writer that
--   takes no lock (a redrive) took the key meanwhile.
WITH auth AS (
    SELECT CAST(:api_key_id AS uuid) IS NULL OR EXISTS (
        SELECT 1 FROM api_keys
        WHERE id = CAST(:api_key_id AS uuid) AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
    ) AS ok
),
claimed_key AS (
    INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, response, expires_at)
    SELECT CAST(:key_tenant AS text), CAST(:idempotency_key AS text),
           CAST(:request_hash AS text), CAST(:ids AS uuid[]), CAST(:key_response AS jsonb),
           CAST(:key_expires_at AS timestamptz)
    FROM auth WHERE auth.ok AND CAST(:key_tenant AS text) IS NOT NULL
    ON CONFLICT (tenant_id, key) DO UPDATE SET
        request_hash = EXCLUDED.request_hash,
        job_ids = EXCLUDED.job_ids,
        response = EXCLUDED.response,
        created_at = now(),
        expires_at = EXCLUDED.expires_at
    WHERE idempotency_keys.expires_at <= now()
    RETURNING 1
),
go AS (
    SELECT auth.ok AND (
        CAST(:key_tenant AS text) IS NULL OR EXISTS (SELECT 1 FROM claimed_key)
    ) AS ok
    FROM auth
),
new_jobs AS (
    INSERT INTO jobs (
        id, tenant_id, type, queue, state, priority, payload, metadata, attempt, max_attempts,
        budget_start, backoff, timeout_seconds, run_at, created_at, updated_at, sequence,
        schedule_id, fire_time, idempotency_key, traceparent, unique_key
    )
    SELECT
        v.id, v.tenant_id, v.type, v.queue, v.state, v.priority, CAST(v.payload AS jsonb),
        CAST(v.metadata AS jsonb), v.attempt, v.max_attempts, v.budget_start,
        CAST(v.backoff AS jsonb), v.timeout_seconds, v.run_at,
        v.created_at, v.created_at, v.sequence, CAST(:schedule_id AS uuid),
        CAST(:fire_time AS timestamptz), CAST(:idempotency_key AS text), v.traceparent,
        v.unique_key
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:tenant_ids AS text[]), CAST(:types AS text[]),
        CAST(:queues AS text[]), CAST(:states AS text[]), CAST(:priorities AS smallint[]),
        CAST(:payloads AS text[]), CAST(:metadatas AS text[]), CAST(:attempts AS int[]),
        CAST(:max_attempts AS int[]), CAST(:budget_starts AS int[]),
        CAST(:backoffs AS text[]), CAST(:timeouts AS float8[]),
        CAST(:run_ats AS timestamptz[]), CAST(:created_ats AS timestamptz[]),
        CAST(:sequences AS int[]), CAST(:traceparents AS text[]),
        CAST(:unique_keys AS text[])
    ) AS v(
        id, tenant_id, type, queue, state, priority, payload, metadata, attempt, max_attempts,
        budget_start, backoff, timeout_seconds, run_at, created_at, sequence, traceparent,
        unique_key
    )
    WHERE (SELECT ok FROM go)
    RETURNING 1
),
new_outbox AS (
    INSERT INTO outbox (job_id, key, available_at, due_attempt, quiet, topics, payloads)
    SELECT r.job_id, r.key, r.available_at, r.due_attempt, r.quiet, m.topics, m.payloads
    FROM unnest(
        CAST(:row_job_ids AS uuid[]), CAST(:row_keys AS text[]),
        CAST(:row_available_ats AS timestamptz[]), CAST(:row_due_attempts AS int[]),
        CAST(:row_quiets AS boolean[])
    ) WITH ORDINALITY AS r(job_id, key, available_at, due_attempt, quiet, n)
    JOIN (
        SELECT msg.row_n, array_agg(msg.topic ORDER BY msg.n) AS topics,
               array_agg(msg.payload ORDER BY msg.n) AS payloads
        FROM unnest(
            CAST(:msg_rows AS int[]), CAST(:msg_topics AS text[]), CAST(:msg_payloads AS bytea[])
        ) WITH ORDINALITY AS msg(row_n, topic, payload, n)
        GROUP BY msg.row_n
    ) AS m ON m.row_n = r.n
    WHERE (SELECT ok FROM go)
    ORDER BY r.n
    RETURNING 1
)
SELECT (SELECT ok FROM auth) AS authorized, (SELECT ok FROM go) AS inserted,
       (SELECT count(*) FROM new_jobs) AS jobs

-- name: lock_unique_keys
-- A submission with unique keys first takes a transaction-level advisory lock per key, in the
-- two-int key space (hash of the tenant, hash of the key), which never meets the migrations'
-- one-bigint lock. The caller sorts the keys, so two submissions never wait on each other in
-- opposite orders. Concurrent duplicates queue here and each decides on the holder as
-- committed by the one before it, instead of racing to a unique violation.
-- pg_advisory_xact_lock waits rather than tries: a loser that gave up could answer
-- "duplicate" for a holder whose transaction then rolls back. A hash collision only
-- serialises two unrelated keys; uq_jobs_unique_key, not this lock, is the guarantee.
SELECT count(pg_advisory_xact_lock(hashtext(CAST(:tenant_id AS text)), hashtext(k)))
FROM unnest(CAST(:keys AS text[])) AS k

-- name: unique_holders
-- The unfinished jobs holding any of the keys, read under the keys' advisory locks (so the
-- answer stays true until this transaction ends) and locked, since replace cancels them.
-- Served by uq_jobs_unique_key: its predicate is this WHERE's state list.
SELECT * FROM jobs
WHERE tenant_id = CAST(:tenant_id AS text) AND unique_key = ANY(CAST(:keys AS text[]))
  AND unique_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running', 'retrying')
ORDER BY id
FOR UPDATE

-- name: note_cancel_reason
-- Why a job was cancelled by someone other than a client's cancel (replaced by a newer
-- unique job), kept in its metadata where the API shows it.
UPDATE jobs SET metadata = metadata || jsonb_build_object('cancel_reason', CAST(:reason AS text))
WHERE id = ANY(CAST(:ids AS uuid[]))

-- name: lock_jobs
-- Every generic transition reads its rows under FOR UPDATE first: concurrent writers to one
-- job (a worker finishing, a cancel, the lease rescuer, the relay's due flip) serialise here,
-- and the pure state machine decides on the rows as they are now. ORDER BY id makes every
-- batch take its locks in the same order (LockRows sits above the Sort), so two batches that
-- share jobs queue behind each other instead of deadlocking. Plain FOR UPDATE, not SKIP
-- LOCKED: the relay holds this lock while it publishes a delayed job's message, and a worker
-- that received that message must wait the few milliseconds rather than drop it.
-- tenant_id scopes the gateway's lookups (another tenant's job does not exist: 404).
SELECT * FROM jobs
WHERE id = ANY(CAST(:ids AS uuid[]))
  AND (CAST(:tenant_id AS text) IS NULL OR tenant_id = CAST(:tenant_id AS text))
ORDER BY id
FOR UPDATE

-- name: save_jobs
-- The guarded write of any transitions, one row each, from arrays (unnest). A row is written
-- only if the job is still in the state, attempt and sequence the transition was computed
-- from; the caller compares the row count with the rows it sent and rolls back the whole
-- batch on a mismatch (someone else moved a job). This is the durable twin of the state
-- machine's own guards (jobline.core.states).
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
    CAST(:results AS text[]), CAST(:last_errors AS text[]), CAST(:errors AS text[]),
    CAST(:purge_afters AS timestamptz[]), CAST(:expected_states AS text[]),
    CAST(:expected_attempts AS int[]), CAST(:expected_sequences AS int[])
) AS v(
    id, state, attempt, budget_start, run_at, started_at, finished_at, lease_owner,
    lease_expires_at, cancel_requested_at, sequence, result, last_error, errors, purge_after,
    expected_state, expected_attempt, expected_sequence
)
WHERE j.id = v.id AND j.state = v.expected_state AND j.attempt = v.expected_attempt
  AND j.sequence = v.expected_sequence

-- name: claim_jobs
-- The worker's claim of a fetched batch in one statement, without reading the rows first:
-- each work message carries the job as it was written (its sequence included), the state
-- machine decides the claim on that, and this writes the columns a claim changes (a unit
-- test holds the list to the state machine) only where the job is still queued at that
-- attempt and sequence. A job that changed since (a due flip, a hand-back, a duplicate of
-- an older message) does not match; the worker then takes the locked path (lock_jobs) for
-- it. The claim's "started" event commits with it, only for rows claimed, in a quiet row
-- (it wakes no relay: migration 0004). (The attempt's
-- row in job_attempts is written when it ends; while it runs the job row describes it.)
WITH v AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:sequences AS int[]),
        CAST(:expected_sequences AS int[]), CAST(:events AS bytea[])
    ) WITH ORDINALITY AS v(id, attempt, sequence, expected_sequence, event, n)
),
claimed AS (
    UPDATE jobs AS j SET
        state = 'running',
        attempt = v.attempt,
        started_at = :now,
        finished_at = NULL,
        lease_owner = :worker_id,
        lease_expires_at = :lease_expires_at,
        sequence = v.sequence,
        updated_at = now()
    FROM v
    WHERE j.id = v.id AND j.state = 'queued' AND j.attempt = v.attempt - 1
      AND j.sequence = v.expected_sequence
    RETURNING j.id
),
events AS (
    INSERT INTO outbox (job_id, key, available_at, quiet, topics, payloads)
    SELECT v.id, CAST(v.id AS text), :now, true, ARRAY[CAST(:events_topic AS text)],
           ARRAY[v.event]
    FROM v JOIN claimed USING (id)
    ORDER BY v.n
)
SELECT id FROM claimed

-- name: succeed_jobs
-- The worker's record of succeeded attempts in one statement, decided on the job as the
-- worker claimed it: written only where that attempt still runs under this worker's lease at
-- the sequence of the claim (a rescued or handed-back job does not match and goes the locked
-- way). A cancel request does not bump the sequence but cannot change a success. The
-- "succeeded" event (a quiet row) and the attempt's record commit with it.
WITH v AS (
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:sequences AS int[]),
        CAST(:started_ats AS timestamptz[]), CAST(:results AS text[]), CAST(:events AS bytea[])
    ) WITH ORDINALITY AS v(id, attempt, sequence, started_at, result, event, n)
),
done AS (
    UPDATE jobs AS j SET
        state = 'succeeded',
        finished_at = :now,
        lease_owner = NULL,
        lease_expires_at = NULL,
        sequence = v.sequence,
        result = CAST(v.result AS jsonb),
        purge_after = :purge_after,
        updated_at = now()
    FROM v
    WHERE j.id = v.id AND j.state = 'running' AND j.attempt = v.attempt
      AND j.lease_owner = :worker_id AND j.sequence = v.sequence - 1
    RETURNING j.id
),
attempt_rows AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
    SELECT v.id, v.attempt, :worker_id, v.started_at, :now, 'succeeded'
    FROM v JOIN done USING (id)
    -- A row exists if the attempt was claimed by a worker of the version before 0003.
    ON CONFLICT (job_id, attempt) DO UPDATE
    SET finished_at = EXCLUDED.finished_at, outcome = EXCLUDED.outcome
    WHERE job_attempts.finished_at IS NULL
),
events AS (
    INSERT INTO outbox (job_id, key, available_at, quiet, topics, payloads)
    SELECT v.id, CAST(v.id AS text), :now, true, ARRAY[CAST(:events_topic AS text)],
           ARRAY[v.event]
    FROM v JOIN done USING (id)
    ORDER BY v.n
)
SELECT id FROM done

-- name: job_attempts
-- A job's attempts: the ended ones from job_attempts (its primary key (job_id, attempt) is
-- this listing's index), and the running one, which has no row yet, from the job's own row.
SELECT attempt, worker_id, started_at, finished_at, outcome, error
FROM job_attempts WHERE job_id = :job_id
UNION ALL
SELECT j.attempt, j.lease_owner, j.started_at, CAST(NULL AS timestamptz), CAST(NULL AS text),
       CAST(NULL AS jsonb)
FROM jobs AS j
WHERE j.id = :job_id AND j.state = 'running' AND NOT EXISTS (
    SELECT 1 FROM job_attempts AS a WHERE a.job_id = j.id AND a.attempt = j.attempt
)
ORDER BY attempt

-- name: record_attempts
-- One row per ended attempt, written when it ends (one write per attempt, not a start and an
-- end): while it runs, the job row (attempt, lease_owner, started_at) describes it. A row
-- exists already if a worker of the version before 0003 claimed it: then it is completed.
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT v.job_id, v.attempt, v.worker_id, v.started_at, v.finished_at, v.outcome,
       CAST(v.error AS jsonb)
FROM unnest(
    CAST(:job_ids AS uuid[]), CAST(:attempts AS int[]), CAST(:worker_ids AS text[]),
    CAST(:started_ats AS timestamptz[]), CAST(:finished_ats AS timestamptz[]),
    CAST(:outcomes AS text[]), CAST(:errors AS text[])
) AS v(job_id, attempt, worker_id, started_at, finished_at, outcome, error)
ON CONFLICT (job_id, attempt) DO UPDATE
SET finished_at = EXCLUDED.finished_at, outcome = EXCLUDED.outcome, error = EXCLUDED.error
WHERE job_attempts.finished_at IS NULL

-- name: renew_leases
-- The heartbeat of every attempt a worker runs, in one statement per round (the worker's
-- lease keeper). Guarded on owner and attempt, so a worker whose job was rescued (its lease
-- expired and another attempt started) learns it lost the job: that id is not returned.
UPDATE jobs AS j SET lease_expires_at = now() + make_interval(secs => :lease_seconds)
FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS int[])) AS v(id, attempt)
WHERE j.id = v.id AND j.state = 'running' AND j.attempt = v.attempt
  AND j.lease_owner = :worker_id
RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel_requested

-- name: record_progress
-- A running attempt's progress in the job's metadata (GET /v1/jobs/{id} shows it). Guarded
-- like renew_leases, so a worker that lost the job cannot overwrite the progress of the
-- attempt that replaced it.
UPDATE jobs SET
    metadata = jsonb_set(metadata, '{progress}', CAST(:progress AS jsonb)),
    updated_at = now()
WHERE id = :id AND state = 'running' AND attempt = :attempt AND lease_owner = :worker_id

-- name: expired_leases
-- The lease rescuer's scan: ix_jobs_running_lease is partial on state = 'running', so this
-- reads only running jobs. SKIP LOCKED: several relays rescue in parallel without waiting
-- on each other or on a worker that is finishing the job right now.
SELECT id FROM jobs
WHERE state = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT :limit
FOR UPDATE SKIP LOCKED

-- ==== outbox ===========================================================================

-- name: insert_outbox
-- Outbox rows of generic transitions (flat messages folded per row, as in insert_jobs).
-- The statement-level trigger notifies the relays once per statement, unless every due row
-- is quiet (lifecycle events only; migration 0004 says why).
INSERT INTO outbox (job_id, key, available_at, due_attempt, quiet, topics, payloads)
SELECT r.job_id, r.key, r.available_at, r.due_attempt, r.quiet, m.topics, m.payloads
FROM unnest(
    CAST(:row_job_ids AS uuid[]), CAST(:row_keys AS text[]),
    CAST(:row_available_ats AS timestamptz[]), CAST(:row_due_attempts AS int[]),
    CAST(:row_quiets AS boolean[])
) WITH ORDINALITY AS r(job_id, key, available_at, due_attempt, quiet, n)
JOIN (
    SELECT msg.row_n, array_agg(msg.topic ORDER BY msg.n) AS topics,
           array_agg(msg.payload ORDER BY msg.n) AS payloads
    FROM unnest(
        CAST(:msg_rows AS int[]), CAST(:msg_topics AS text[]), CAST(:msg_payloads AS bytea[])
    ) WITH ORDINALITY AS msg(row_n, topic, payload, n)
    GROUP BY msg.row_n
) AS m ON m.row_n = r.n
ORDER BY r.n

-- name: take_outbox
-- The relay's claim: due rows, oldest first, deleted in the transaction that stays open
-- while they are published (a failed publish rolls the delete back; a crash after the
-- broker took them but before the commit re-publishes: duplicates, never losses).
-- * ix_outbox_available_at_id yields rows in claim order, so the scan stops after :limit.
-- * SKIP LOCKED lets any number of relays drain in parallel, each taking rows no other
--   holds; no cursor over ids, so a transaction that commits late is simply picked up later.
-- * NOT EXISTS keeps each job's messages in order across relays: a row waits while an
--   older due row of its job is still here (maybe being published by another relay right
--   now), through ix_outbox_job_id_id. Older rows not yet due (a retry's delayed work
--   message) do not hold back the job's later events.
-- RETURNING gives no order: the caller sorts by (available_at, id).
WITH due AS (
    SELECT o.id FROM outbox AS o
    WHERE o.available_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM outbox AS older
          WHERE older.job_id = o.job_id AND older.id < o.id AND older.available_at <= now()
      )
    ORDER BY o.available_at, o.id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox AS o USING due WHERE o.id = due.id
RETURNING o.id, o.job_id, o.key, o.available_at, o.due_attempt,
    -- A row of the one-message form (written before migration 0003) as a row of one.
    coalesce(o.topics, ARRAY[o.topic]) AS topics,
    coalesce(o.payloads, ARRAY[o.value]) AS payloads,
    o.topics IS NULL AS legacy

-- name: hold_outbox
-- Rows the relay took but may not publish (a work message for a queue nobody declared):
-- back into the outbox under their own ids (per-job order is by id), due again later.
-- Flat messages folded per row as in insert_outbox.
INSERT INTO outbox (id, job_id, key, available_at, due_attempt, quiet, topics, payloads)
SELECT r.id, r.job_id, r.key, CAST(:available_at AS timestamptz), r.due_attempt, false,
       m.topics, m.payloads
FROM unnest(
    CAST(:row_ids AS bigint[]), CAST(:row_job_ids AS uuid[]), CAST(:row_keys AS text[]),
    CAST(:row_due_attempts AS int[])
) WITH ORDINALITY AS r(id, job_id, key, due_attempt, n)
JOIN (
    SELECT msg.row_n, array_agg(msg.topic ORDER BY msg.n) AS topics,
           array_agg(msg.payload ORDER BY msg.n) AS payloads
    FROM unnest(
        CAST(:msg_rows AS int[]), CAST(:msg_topics AS text[]), CAST(:msg_payloads AS bytea[])
    ) WITH ORDINALITY AS msg(row_n, topic, payload, n)
    GROUP BY msg.row_n
) AS m ON m.row_n = r.n

-- name: outbox_backlog
-- For the relay's gauges: rows due now and the age of the oldest.
SELECT count(*) AS due, EXTRACT(EPOCH FROM (now() - min(available_at))) AS oldest_age_seconds
FROM outbox WHERE available_at <= now()

-- name: outbox_next_due
-- When an idle relay should look again (at start, after a reconnect, on the poll): seconds
-- until the earliest row that is not yet due. Reads the first entry of
-- ix_outbox_available_at_id past now(): one index probe however long the backlog. The
-- database's clock decides, like take_outbox does, so the relay's clock skew does not matter.
SELECT EXTRACT(EPOCH FROM (min(available_at) - now())) AS seconds
FROM outbox WHERE available_at > now()

-- ==== retention (jobline/pg/purge.py, run by the relay) ===============================

-- name: purge_lock
-- One purger per table at a time across every relay replica: a transaction-level advisory
-- lock, tried (never waited for) and released at commit, so a crashed relay holds nothing.
-- The others skip the round, which bounds the purge's I/O to one stream per table however
-- many relays run. (SKIP LOCKED below would keep them correct without it.)
SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))

-- name: purge_jobs
-- One batch of finished jobs whose retention ran out, with their attempts.
-- * ix_jobs_purge_after (partial: only finished jobs have purge_after) yields the due jobs
--   oldest first, so the scan stops after :limit rows however many jobs are still live.
-- * FOR UPDATE SKIP LOCKED: a job someone holds (a redrive, a late worker's locked write)
--   is left for a later round; the lock re-checks purge_after on the newest row version, so
--   a job redriven since the snapshot (purge_after now NULL) is not deleted.
-- * The attempts go in the same statement (their primary key (job_id, attempt) is the
--   lookup), which also counts them; the ON DELETE CASCADE then finds nothing left to do.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE purge_after < now()
    ORDER BY purge_after
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
attempts AS (
    DELETE FROM job_attempts AS a USING doomed WHERE a.job_id = doomed.id RETURNING 1
),
gone AS (
    DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS jobs, (SELECT count(*) FROM attempts) AS attempts

-- name: purge_idempotency_keys
-- One batch of expired Idempotency-Keys (a replay after expires_at is a new submission
-- anyway: insert_jobs overwrites an expired key in place). ix_idempotency_keys_expires_at
-- yields them oldest first; SKIP LOCKED leaves a key a submission is re-claiming right now.
WITH doomed AS (
    SELECT tenant_id, key FROM idempotency_keys
    WHERE expires_at < now()
    ORDER BY expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
DELETE FROM idempotency_keys AS k USING doomed
WHERE k.tenant_id = doomed.tenant_id AND k.key = doomed.key

-- ==== keys, tenants, policies ==========================================================

-- name: ensure_tenant
INSERT INTO tenants (id, name) VALUES (:id, :name) ON CONFLICT (id) DO NOTHING

-- name: insert_key
INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, expires_at)
VALUES (:id, :tenant_id, :name, :prefix, :key_hash, :scopes, :expires_at)
RETURNING id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at

-- name: list_keys
SELECT id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at
FROM api_keys
WHERE CAST(:tenant_id AS text) IS NULL OR tenant_id = CAST(:tenant_id AS text)
ORDER BY created_at, id

-- name: revoke_key
-- NOTIFY through the api_keys trigger: every gateway drops its cached copy of the key.
-- :tenant_id confines a tenant's keys:manage key to its own keys (NULL: the operator).
UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
WHERE id = :id AND tenant_id = COALESCE(CAST(:tenant_id AS text), tenant_id)
RETURNING id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at

-- name: key_by_prefix
-- The authentication lookup: api_keys.prefix is unique (its index is this probe); the hash
-- is compared in constant time by the caller.
SELECT id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at,
       key_hash
FROM api_keys WHERE prefix = :prefix

-- name: type_policies
-- A tenant's stored defaults for the given job types (one primary-key probe each).
SELECT type, max_attempts, backoff FROM job_type_policies
WHERE tenant_id = :tenant_id AND type = ANY(CAST(:types AS text[]))

-- ==== declared queues and registered job types (migration 0005) =======================
-- Small tables, read whole by the gateways and relays, which keep a copy until the
-- jobline_catalog NOTIFY of their triggers says a row changed.

-- name: registry_queues
SELECT name, partitions, declared_by, created_at, updated_at FROM queues ORDER BY name

-- name: registry_job_types
SELECT name, queue, payload_schema, allowed_tenants, source, registered_by, created_at,
       updated_at
FROM job_types ORDER BY name

-- name: declare_queue
-- An operator's declaration: creates the queue or changes its partition count (used the
-- next time its topic is created; an existing topic is not resized).
INSERT INTO queues (name, partitions, declared_by) VALUES (:name, :partitions, :declared_by)
ON CONFLICT (name) DO UPDATE
SET partitions = EXCLUDED.partitions, declared_by = EXCLUDED.declared_by, updated_at = now()
RETURNING name, partitions, declared_by, created_at, updated_at

-- name: declare_missing_queues
-- A worker's start (and `jobline dev`): the queues it serves exist afterwards; a queue an
-- operator declared keeps its partitions. (The statement trigger notifies even when no row
-- is inserted, so callers skip this when every queue is already declared.)
INSERT INTO queues (name, declared_by)
SELECT n.name, CAST(:declared_by AS text) FROM unnest(CAST(:names AS text[])) AS n(name)
ON CONFLICT (name) DO NOTHING

-- name: register_job_type
-- A worker's registration at start, or an operator's declaration: the last writer wins
-- (a type's schema is its handler's, and the handler deployed last is the one that runs).
-- The WHERE leaves an unchanged row alone (its updated_at says when it last changed);
-- callers skip the statement when nothing changed (the trigger would still notify).
INSERT INTO job_types AS t (name, queue, payload_schema, allowed_tenants, source, registered_by)
VALUES (:name, :queue, :payload_schema, :allowed_tenants, :source, :registered_by)
ON CONFLICT (name) DO UPDATE
SET queue = EXCLUDED.queue, payload_schema = EXCLUDED.payload_schema,
    allowed_tenants = EXCLUDED.allowed_tenants, source = EXCLUDED.source,
    registered_by = EXCLUDED.registered_by, updated_at = now()
WHERE (t.queue, t.payload_schema, t.allowed_tenants, t.source)
      IS DISTINCT FROM (EXCLUDED.queue, EXCLUDED.payload_schema, EXCLUDED.allowed_tenants,
                        EXCLUDED.source)
RETURNING name, queue, payload_schema, allowed_tenants, source, registered_by, created_at,
          updated_at
