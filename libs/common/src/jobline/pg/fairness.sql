-- Tenant fairness: parked work messages (jobline.pg.fairness; the rules: jobline.core.fairness).

-- name: queued_in_queue
-- One queue's queued jobs per tenant (ix_jobs_queued_queue_tenant: only queued jobs, and
-- only this queue's: a backlog in another queue costs this count nothing).
SELECT tenant_id, count(*) AS n FROM jobs
WHERE state = 'queued' AND queue = :queue
GROUP BY tenant_id

-- name: parked_in_queue
SELECT tenant_id, count(*) AS n FROM outbox_parked WHERE queue = :queue GROUP BY tenant_id

-- name: parked_queues
-- The queues with parked messages: a skip scan over ix_outbox_parked_release (one probe per
-- queue, however many messages are parked).
WITH RECURSIVE q AS (
    (SELECT queue FROM outbox_parked ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT p.queue FROM outbox_parked AS p WHERE p.queue > q.queue ORDER BY p.queue LIMIT 1)
    FROM q WHERE q.queue IS NOT NULL
)
SELECT queue FROM q WHERE queue IS NOT NULL

-- name: park
-- Work messages held back in the relay's publishing transaction (their rows were taken).
INSERT INTO outbox_parked (job_id, queue, tenant_id, priority, topic, payload, key)
SELECT * FROM unnest(
    CAST(:job_ids AS uuid[]), CAST(:queues AS text[]), CAST(:tenants AS text[]),
    CAST(:priorities AS smallint[]), CAST(:topics AS text[]), CAST(:payloads AS bytea[]),
    CAST(:keys AS text[])
)

-- name: take_parked
-- A tenant's best :n parked messages of a queue, deleted in the relay's transaction that stays
-- open while they are published (a failed publish rolls the delete back: they stay parked).
-- SKIP LOCKED: two releasers never take one message twice.
DELETE FROM outbox_parked WHERE id IN (
    SELECT id FROM outbox_parked
    WHERE queue = :queue AND tenant_id = :tenant
    ORDER BY priority DESC, id
    LIMIT :n
    FOR UPDATE SKIP LOCKED
)
RETURNING id, job_id, key, topic, payload, priority

-- name: release_lock
-- One releaser of a queue at a time across relay replicas (tried, never waited for; a hash
-- collision only makes two queues share a releaser for a round).
SELECT pg_try_advisory_xact_lock(7341, hashtext(CAST(:queue AS text)))
