-- The gateway's own statements (reads for the API, idempotency keys, schedules). Job writes
-- go through jobline.pg (the state machine's guarded path). Every statement is scoped by
-- tenant_id: another tenant's row is simply not found (404, never 403).

-- name: get_job
-- Primary-key probe; the tenant condition makes another tenant's id a miss.
SELECT * FROM jobs WHERE id = :id AND tenant_id = :tenant_id

-- name: job_exists
SELECT EXISTS (SELECT 1 FROM jobs WHERE id = :id AND tenant_id = :tenant_id)

-- name: stored_key
-- An Idempotency-Key's stored answer, read after the insert found the key taken: under READ
-- COMMITTED this new statement sees the winner's committed row.
SELECT request_hash, job_ids, response FROM idempotency_keys
WHERE tenant_id = :tenant_id AND key = :key

-- name: live_key
-- Whether an unexpired Idempotency-Key exists: a unique submission asks first (under its key
-- locks), since its holder check would otherwise answer a retry of itself with a conflict.
SELECT EXISTS (
    SELECT 1 FROM idempotency_keys
    WHERE tenant_id = :tenant_id AND key = :key AND expires_at > now()
)

-- name: purge_idempotency_keys
-- Expired keys, oldest first via ix_idempotency_keys_expires_at. Replicas purging at once
-- split the rows instead of queueing on each other (SKIP LOCKED).
DELETE FROM idempotency_keys WHERE (tenant_id, key) IN (
    SELECT tenant_id, key FROM idempotency_keys
    WHERE expires_at < now()
    ORDER BY expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)

-- name: insert_schedule
-- uq_schedules_tenant_id_name makes a second schedule of the same name a unique violation
-- (409).
INSERT INTO schedules (
    tenant_id, name, cron, timezone, interval_seconds, job_template, misfire_policy,
    catch_up_limit, overlap_policy, paused, start_at, end_at, next_fire_at
) VALUES (
    :tenant_id, :name, :cron, :timezone, :interval_seconds, :job_template, :misfire_policy,
    :catch_up_limit, :overlap_policy, :paused, :start_at, :end_at, :next_fire_at
)
RETURNING *

-- name: list_schedules
-- Keyset on name: uq_schedules_tenant_id_name (tenant_id, name) is this listing's index.
SELECT * FROM schedules
WHERE tenant_id = :tenant_id
  AND (CAST(:name AS text) IS NULL OR name = CAST(:name AS text))
  AND (CAST(:after AS text) IS NULL OR name > CAST(:after AS text))
ORDER BY name
LIMIT :limit

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id AND tenant_id = :tenant_id

-- name: lock_schedule
-- Rows are changed under FOR UPDATE, which also waits for a relay firing the schedule.
SELECT * FROM schedules WHERE id = :id AND tenant_id = :tenant_id FOR UPDATE

-- name: update_schedule
UPDATE schedules SET
    name = :name, cron = :cron, timezone = :timezone, interval_seconds = :interval_seconds,
    job_template = :job_template, misfire_policy = :misfire_policy,
    catch_up_limit = :catch_up_limit, overlap_policy = :overlap_policy, start_at = :start_at,
    end_at = :end_at, paused = :paused, next_fire_at = :next_fire_at, updated_at = now()
WHERE id = :id
RETURNING *

-- name: set_schedule_paused
UPDATE schedules SET paused = :paused, next_fire_at = :next_fire_at, updated_at = now()
WHERE id = :id
RETURNING *

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id AND tenant_id = :tenant_id RETURNING id

-- name: schedule_jobs
-- UNIQUE (schedule_id, fire_time) is also this listing's index, read backwards; fire_time is
-- unique within the schedule, so it alone is the keyset.
SELECT * FROM jobs
WHERE schedule_id = :schedule_id AND fire_time IS NOT NULL
  AND (CAST(:before AS timestamptz) IS NULL OR fire_time < CAST(:before AS timestamptz))
ORDER BY fire_time DESC
LIMIT :limit

-- name: queue_counts
-- GET /v1/queues: jobs per queue and state. A scan of the tenant's range of
-- ix_jobs_tenant_created: as cheap as the tenant's retained jobs are few (the retention purge
-- removes finished ones). The lag is the oldest run_at among queued jobs.
SELECT queue, state, count(*) AS n,
       min(run_at) FILTER (WHERE state = 'queued') AS oldest_queued_at
FROM jobs
WHERE tenant_id = :tenant_id
GROUP BY queue, state

-- name: state_counts
-- GET /v1/stats: jobs per state now (ix_jobs_tenant_state_created: one range per state).
SELECT state, count(*) AS n FROM jobs WHERE tenant_id = :tenant_id GROUP BY state

-- name: finished_counts
-- GET /v1/stats: jobs that finished within the window, per final state.
SELECT state, count(*) AS n FROM jobs
WHERE tenant_id = :tenant_id
  AND state IN ('succeeded', 'dead', 'cancelled')
  AND finished_at >= :since
GROUP BY state

-- name: dlq_groups
-- GET /v1/dlq/groups: the tenant's dead jobs (ix_jobs_tenant_state_created's 'dead' range)
-- grouped by type, queue and the last attempt's error class; the newest of each group is
-- its sample. Largest groups first, at most :limit.
SELECT type, queue, last_error->>'error_class' AS error_class, count(*) AS n,
       min(coalesce(finished_at, updated_at)) AS first_dead_at,
       max(coalesce(finished_at, updated_at)) AS last_dead_at,
       (array_agg(id ORDER BY coalesce(finished_at, updated_at) DESC, id DESC))[1]
           AS sample_job_id,
       (array_agg(last_error->>'message'
                  ORDER BY coalesce(finished_at, updated_at) DESC, id DESC))[1]
           AS sample_message
FROM jobs
WHERE tenant_id = :tenant_id AND state = 'dead'
  AND (CAST(:type AS text) IS NULL OR type = CAST(:type AS text))
  AND (CAST(:queue AS text) IS NULL OR queue = CAST(:queue AS text))
GROUP BY type, queue, last_error->>'error_class'
ORDER BY n DESC, last_dead_at DESC
LIMIT :limit
