-- The web console's own statements (reads for its pages, the DLQ group actions). Like the
-- API's, every one is scoped by tenant_id. The jobs listing itself is the API's
-- (jobline_gateway.store.list_jobs), and so are the DLQ groups (dlq_groups in queries.sql).

-- name: tenants
-- The operator's tenant switcher; the primary key in order.
SELECT id FROM tenants ORDER BY id LIMIT 1000

-- name: keyed_jobs
-- The text search by Idempotency-Key: the key's primary key (tenant_id, key) is the probe.
-- Keys are kept for the idempotency retention only; older jobs are found by their id.
SELECT job_ids FROM idempotency_keys WHERE tenant_id = :tenant_id AND key = :key

-- name: dlq_group_ids
-- One DLQ group's dead jobs, oldest first, up to :limit (the 'dead' range of
-- ix_jobs_tenant_state_created, filtered by type, queue and error class).
SELECT id FROM jobs
WHERE tenant_id = :tenant_id AND state = 'dead' AND type = :type AND queue = :queue
  AND (last_error->>'error_class') IS NOT DISTINCT FROM CAST(:error_class AS text)
ORDER BY created_at, id
LIMIT :limit

-- name: dlq_group_count
-- The dry run of a group's redrive: how many jobs it would send back.
SELECT count(*) FROM jobs
WHERE tenant_id = :tenant_id AND state = 'dead' AND type = :type AND queue = :queue
  AND (last_error->>'error_class') IS NOT DISTINCT FROM CAST(:error_class AS text)

-- name: purge_dlq_group
-- Delete a batch of one group's dead jobs with their attempts (as the retention purge does,
-- in one statement). SKIP LOCKED leaves a job someone is redriving right now.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE tenant_id = :tenant_id AND state = 'dead' AND type = :type AND queue = :queue
      AND (last_error->>'error_class') IS NOT DISTINCT FROM CAST(:error_class AS text)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
attempts AS (
    DELETE FROM job_attempts AS a USING doomed WHERE a.job_id = doomed.id RETURNING 1
)
DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id RETURNING j.id

-- name: overview_groups
-- The overview's table: per queue and job type, what finished within the window, what runs
-- and waits now, and the run time and queue wait percentiles of the window's jobs. One pass
-- over the tenant's range of ix_jobs_tenant_created: as cheap as the tenant's retained jobs
-- are few (the retention purge removes finished ones). The queue wait is the latest
-- attempt's (started_at - run_at); the lag is the oldest queued job's due time.
SELECT queue, type,
       count(*) FILTER (WHERE state = 'succeeded' AND finished_at >= :since) AS succeeded,
       count(*) FILTER (WHERE state = 'dead' AND finished_at >= :since) AS dead,
       count(*) FILTER (WHERE state = 'retrying') AS retrying,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'queued') AS queued,
       min(run_at) FILTER (WHERE state = 'queued') AS oldest_queued_at,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at)
       ) FILTER (WHERE state = 'succeeded' AND finished_at >= :since) AS run_seconds,
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (
           ORDER BY extract(epoch FROM greatest(started_at - run_at, interval '0'))
       ) FILTER (WHERE started_at >= :since) AS wait_seconds
FROM jobs
WHERE tenant_id = :tenant_id
GROUP BY queue, type
ORDER BY queue, type
LIMIT 500

-- name: overview_series
-- The overview's charts: jobs finished per bucket (a minute over the hour, an hour over the
-- day), succeeded and dead apart.
SELECT date_bin(CAST(:bucket AS interval), finished_at, TIMESTAMPTZ '2000-01-01') AS at,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE state = 'dead') AS dead
FROM jobs
WHERE tenant_id = :tenant_id AND finished_at >= :since
  AND state IN ('succeeded', 'dead')
GROUP BY 1
ORDER BY 1

-- name: findings
-- The analyzer's findings of the tenant, newest first (ix_analyzer_findings_tenant_created).
SELECT id, job_type, kind, severity, window_start, window_end, baseline, observed, score,
       explanation, error_class, created_at
FROM analyzer_findings
WHERE tenant_id = :tenant_id AND created_at >= :since
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: rollup_series
-- The minute series of one job type around a finding (the rollups' primary key range).
SELECT bucket, submitted, succeeded, retried, dead
FROM analyzer_rollups
WHERE tenant_id = :tenant_id AND job_type = :job_type
  AND bucket >= :since AND bucket < :until
ORDER BY bucket

-- name: recommendations
-- The analyzer's retry recommendations of the tenant as it last computed them.
SELECT id, job_type, policy, body, updated_at, applied_at
FROM analyzer_recommendations
WHERE tenant_id = :tenant_id
ORDER BY job_type
LIMIT 200

-- name: lock_recommendation
-- Apply: the recommendation as it was shown, locked so two applies write it once.
SELECT job_type, policy FROM analyzer_recommendations
WHERE id = :id AND tenant_id = :tenant_id
FOR UPDATE

-- name: mark_applied
UPDATE analyzer_recommendations SET applied_at = now() WHERE id = :id RETURNING applied_at
