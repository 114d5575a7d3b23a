-- The relay's own statements: firing recurring schedules (jobline_relay/scheduler.py). The
-- outbox and job statements it shares with the other services are in jobline/pg/queries.sql.

-- name: claim_due_schedules
-- The scheduler's claim: schedules whose next planned time has come, oldest first, through
-- the partial index ix_schedules_due (next_fire_at WHERE NOT paused AND next_fire_at IS NOT
-- NULL), so paused and finished schedules cost nothing and the scan stops after :limit
-- unlocked rows. SKIP LOCKED lets any number of relays fire in parallel, each taking
-- schedules no other holds; the lock is held until the fired jobs and the new next_fire_at
-- commit together, so a schedule is never planned twice from the same state. now() is
-- returned so the planner uses the database's clock, the one that decided "due".
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

-- name: schedule_fired
-- Whether a fire time already has its job: UNIQUE (schedule_id, fire_time) is the guarantee,
-- this probe of its index lets the scheduler skip a repeat without an error and a savepoint.
SELECT EXISTS (
    SELECT 1 FROM jobs WHERE schedule_id = :schedule_id AND fire_time = :fire_time
) AS fired

-- name: advance_schedule
-- Written in the claim's transaction, with the schedule's row still locked by it. The fired
-- jobs and this move commit together: a crash before the commit fires again from the old
-- next_fire_at, and UNIQUE (schedule_id, fire_time) on jobs turns any repeat into a no-op.
UPDATE schedules SET
    next_fire_at = :next_fire_at,
    last_fired_at = coalesce(CAST(:last_fired_at AS timestamptz), last_fired_at),
    updated_at = now()
WHERE id = :id

-- name: schedules_next_due
-- When an idle scheduler should look again: seconds until the earliest unpaused next_fire_at.
-- min() over the partial index ix_schedules_due is its first entry: one index probe. The
-- database's clock decides, as in the claim, so the relay's own clock skew does not matter.
SELECT EXTRACT(EPOCH FROM (min(next_fire_at) - now())) AS seconds
FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL
