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

-- name: heal_queued
-- The healer (jobline_relay/healer.py): queued jobs that have waited at least :after seconds
-- since they became queued, whose work message is no longer in the outbox (so it went to the
-- broker, which may have lost it), and that were not healed within :after * 2^heals seconds
-- (capped at 2^:max_doublings): a backlog that is only slow gets a few duplicates per job,
-- never one per round. :queues and :before narrow a round to the queues whose topic a relay
-- just had to create again, and to jobs queued before that. The partial index
-- ix_jobs_queued_since holds only queued jobs, in the order this scan wants. SKIP LOCKED:
-- a job a worker is claiming right now is left alone, and relays heal disjoint jobs.
-- updated_at is left as it is, so a healed job still counts its wait from when it was queued.
WITH stuck AS (
    SELECT j.id FROM jobs AS j
    WHERE j.state = 'queued'
      AND j.updated_at <= now() - make_interval(secs => :after)
      AND (CAST(:before AS timestamptz) IS NULL OR j.updated_at < CAST(:before AS timestamptz))
      AND (CAST(:queues AS text[]) IS NULL OR j.queue = ANY(CAST(:queues AS text[])))
      AND (
          j.healed_at IS NULL
          OR j.healed_at <= now() - make_interval(
              secs => :after * power(2, least(j.heals, :max_doublings))
          )
      )
      AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.job_id = j.id)
      -- Parked for tenant fairness: its message is not lost, it waits its turn. (Not "its
      -- tenant has work parked": if the broker lost the window's messages, only healing them
      -- frees the room the parked ones wait for.)
      AND NOT EXISTS (SELECT 1 FROM outbox_parked AS p WHERE p.job_id = j.id)
    ORDER BY j.updated_at
    LIMIT :limit
    FOR UPDATE OF j SKIP LOCKED
)
UPDATE jobs AS j SET heals = least(j.heals + 1, 32767), healed_at = now()
FROM stuck WHERE j.id = stuck.id
RETURNING j.*

-- name: set_aside_outbox_row
-- A row the broker refuses for good, kept with the reason (the relay took it out of the
-- outbox in this same transaction).
INSERT INTO outbox_set_aside (outbox_id, job_id, key, topics, payloads, reason)
VALUES (:outbox_id, :job_id, :key, CAST(:topics AS text[]), CAST(:payloads AS bytea[]), :reason)
