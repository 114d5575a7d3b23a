-- Tenant quotas and the shared submission bucket (jobline.pg.limits).

-- name: quota_overrides
-- The operator's overrides of one tenant (no row: every default applies).
SELECT max_schedules, min_schedule_interval_seconds, max_unfinished_jobs,
       submissions_per_second, submission_burst
FROM tenant_quotas WHERE tenant_id = :tenant_id

-- name: set_quota_overrides
-- The whole row is replaced: a field left out (NULL) goes back to the default.
INSERT INTO tenant_quotas (
    tenant_id, max_schedules, min_schedule_interval_seconds, max_unfinished_jobs,
    submissions_per_second, submission_burst, updated_at
) VALUES (
    :tenant_id, :max_schedules, :min_schedule_interval_seconds, :max_unfinished_jobs,
    :submissions_per_second, :submission_burst, now()
)
ON CONFLICT (tenant_id) DO UPDATE SET
    max_schedules = EXCLUDED.max_schedules,
    min_schedule_interval_seconds = EXCLUDED.min_schedule_interval_seconds,
    max_unfinished_jobs = EXCLUDED.max_unfinished_jobs,
    submissions_per_second = EXCLUDED.submissions_per_second,
    submission_burst = EXCLUDED.submission_burst,
    updated_at = now()
RETURNING max_schedules, min_schedule_interval_seconds, max_unfinished_jobs,
          submissions_per_second, submission_burst

-- name: lease_tokens
-- A gateway's lease of a block of the tenant's shared tokens, in one statement: lock the
-- bucket row, refill it by the time since its last lease (clock_timestamp(): the lock may
-- have been waited for), take :asked tokens, or all there are if at least :needed, or none,
-- and write the rest back. FOR UPDATE serialises leases of one tenant for this statement
-- only; a waiter re-reads the row its predecessor wrote. A tenant's first lease creates the
-- bucket full (two concurrent first leases may both start full: one burst, once). The
-- arithmetic is jobline.core.tokens.lease's, which the unit tests pin down.
WITH current_ AS (
    SELECT tokens, updated_at FROM tenant_rate_buckets
    WHERE tenant_id = :tenant_id FOR UPDATE
),
refilled AS (
    SELECT COALESCE((
        SELECT LEAST(
            CAST(:burst AS float8),
            tokens + GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - updated_at), 0)
                * CAST(:rate AS float8)
        ) FROM current_
    ), CAST(:burst AS float8)) AS tokens
),
decided AS (
    SELECT tokens, CASE
        WHEN floor(tokens) >= :asked THEN CAST(:asked AS int)
        WHEN floor(tokens) >= :needed THEN CAST(floor(tokens) AS int)
        ELSE 0
    END AS granted
    FROM refilled
),
saved AS (
    INSERT INTO tenant_rate_buckets (tenant_id, tokens, updated_at)
    SELECT :tenant_id, tokens - granted, clock_timestamp() FROM decided
    ON CONFLICT (tenant_id) DO UPDATE SET
        tokens = EXCLUDED.tokens, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT granted, tokens - granted AS tokens FROM decided

-- name: count_unfinished
-- Jobs of the tenant not yet finished, counted up to :cap + 1 (enough to refuse; an index
-- scan of ix_jobs_tenant_state_created per state, bounded by the cap, never a table scan).
SELECT count(*) FROM (
    SELECT 1 FROM jobs
    WHERE tenant_id = :tenant_id AND state IN ('scheduled', 'queued', 'running', 'retrying')
    LIMIT :cap + 1
) AS unfinished

-- name: lock_tenant_schedules
-- Serialises schedule creation per tenant (the tenant row's lock, for this transaction), so
-- two gateways cannot both see room for the last schedule; then counts them.
SELECT (SELECT count(*) FROM schedules WHERE tenant_id = :tenant_id) AS schedules
FROM tenants WHERE id = :tenant_id FOR UPDATE
