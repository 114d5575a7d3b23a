-- Concurrency and rate gates (jobline.pg.gates; the rules are jobline.core.limits').

-- name: lock_gate
-- A claim through a gate, and the relay releasing its waiting jobs, serialise on the gate:
-- a transaction-level advisory lock in a two-int key space of its own (a fixed first half),
-- taken one gate at a time in sorted order, so two claims never wait on each other in
-- opposite orders. A hash collision only serialises two unrelated gates.
SELECT pg_advisory_xact_lock(7340, hashtext(CAST(:gate AS text)))

-- name: running_in_gate
-- Running jobs counted by a concurrency gate (ix_jobs_concurrency_running). A job whose
-- worker died stays running until the relay rescues its lease: its slot comes back then.
SELECT count(*) FROM jobs WHERE concurrency_key = :gate AND state = 'running'

-- name: starts_in_gate
-- Starts through a rate gate after :since (see jobline.core.limits.window_start).
SELECT count(*) FROM rate_starts WHERE gate = :gate AND started_at > :since

-- name: record_start
-- One start through a rate gate; starts that left the window are pruned on the way.
WITH pruned AS (
    DELETE FROM rate_starts WHERE gate = :gate AND started_at <= :since
)
INSERT INTO rate_starts (gate, started_at) VALUES (:gate, :started_at)

-- name: note_gate
-- The gate's limit as the worker declares it, for the relay that releases its waiting jobs.
INSERT INTO limit_gates (gate, kind, max, period_seconds, updated_at)
VALUES (:gate, :kind, :max, :period_seconds, now())
ON CONFLICT (gate) DO UPDATE SET
    kind = EXCLUDED.kind, max = EXCLUDED.max, period_seconds = EXCLUDED.period_seconds,
    updated_at = now()
WHERE (limit_gates.kind, limit_gates.max, limit_gates.period_seconds)
    IS DISTINCT FROM (EXCLUDED.kind, EXCLUDED.max, EXCLUDED.period_seconds)

-- name: mark_admitted
-- A job admitted through its gates: it no longer waits, and counts in its concurrency gate
-- while it runs.
UPDATE jobs SET waiting_on = NULL, concurrency_key = :concurrency_key WHERE id = :id

-- name: mark_held
UPDATE jobs SET waiting_on = :gate WHERE id = :id

-- name: held_gates
-- The gates that have held jobs, with their limit, how many wait, and how many were
-- released and have not started yet (queued, still waiting_on the gate). A gate whose limit
-- is no longer known (a tenant changed its limits: jobline.pg.typelimits) comes with a NULL
-- kind: its jobs are released for their claims to decide again.
SELECT w.gate, g.kind, g.max, g.period_seconds, w.held,
       (SELECT count(*) FROM jobs j WHERE j.waiting_on = w.gate AND j.state = 'queued')
           AS released
FROM (
    SELECT waiting_on AS gate, count(*) AS held FROM jobs
    WHERE waiting_on IS NOT NULL AND state = 'scheduled'
    GROUP BY waiting_on
) AS w
LEFT JOIN limit_gates AS g ON g.gate = w.gate

-- name: held_jobs
-- The next jobs a gate releases: highest priority, then oldest. SKIP LOCKED: a job being
-- cancelled meanwhile is simply not released this round.
SELECT id FROM jobs
WHERE waiting_on = :gate AND state = 'scheduled'
ORDER BY priority DESC, created_at
LIMIT :n
FOR UPDATE SKIP LOCKED
