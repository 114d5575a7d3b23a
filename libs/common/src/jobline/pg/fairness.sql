-- Tenant fairness: parked work messages (jobline.pg.fairness; the rules: jobline.core.fairness).

-- name: queued_by_tenant
-- Queued jobs per queue and tenant (through ix_jobs_queued_since: only queued jobs).
SELECT queue, tenant_id, count(*) AS n FROM jobs WHERE state = 'queued' GROUP BY queue, tenant_id

-- name: parked_by_tenant
SELECT queue, tenant_id, count(*) AS n FROM outbox_parked GROUP BY queue, tenant_id

-- name: park
-- Work messages held back in the relay's publishing transaction (their rows were taken).
INSERT INTO outbox_parked (job_id, queue, tenant_id, priority, topic, payload, key)
SELECT * FROM unnest(
    CAST(:job_ids AS uuid[]), CAST(:queues AS text[]), CAST(:tenants AS text[]),
    CAST(:priorities AS smallint[]), CAST(:topics AS text[]), CAST(:payloads AS bytea[]),
    CAST(:keys AS text[])
)

-- name: release
-- A tenant's best :n parked messages of a queue back into the outbox, admitted (published
-- without being parked again). The insert's trigger wakes the relays. SKIP LOCKED: two
-- releasers never move one message twice. healed_at says when the job's message was last
-- written, so the healer gives a job that waited parked for minutes its full wait again
-- instead of publishing a duplicate the moment it leaves.
WITH moved AS (
    DELETE FROM outbox_parked WHERE id IN (
        SELECT id FROM outbox_parked
        WHERE queue = :queue AND tenant_id = :tenant
        ORDER BY priority DESC, id
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id, job_id, key, topic, payload, priority
), touched AS (
    UPDATE jobs SET healed_at = now() FROM moved WHERE jobs.id = moved.job_id
)
INSERT INTO outbox (job_id, key, topics, payloads, admitted)
SELECT job_id, key, ARRAY[topic], ARRAY[payload], true FROM moved ORDER BY priority DESC, id

-- name: release_lock
-- One releaser at a time across relay replicas (tried, never waited for).
SELECT pg_try_advisory_xact_lock(7341, 0)
