-- Webhooks (jobline/pg/webhookstore.py): the gateway's endpoint routes and the relay's
-- fan-out and delivery loop. Every statement the gateway runs is scoped by tenant_id, so
-- another tenant's endpoint is simply not found.

-- name: lock_tenant_endpoints
-- Serialises creations per tenant, so two gateways cannot both take the last slot of
-- gateway_webhook_max_endpoints. A transaction-level advisory lock: nothing to clean up.
SELECT pg_advisory_xact_lock(hashtextextended('jobline.webhooks:' || :tenant_id, 0))

-- name: count_endpoints
-- ix_webhook_endpoints_tenant_created leads with tenant_id: an index-only count.
SELECT count(*) FROM webhook_endpoints WHERE tenant_id = :tenant_id

-- name: insert_endpoint
INSERT INTO webhook_endpoints (tenant_id, url, description, event_types, secret)
VALUES (:tenant_id, :url, :description, :event_types, :secret)
RETURNING *

-- name: list_endpoints
-- Keyset pagination on (created_at, id) through ix_webhook_endpoints_tenant_created.
SELECT * FROM webhook_endpoints
WHERE tenant_id = :tenant_id
  AND (CAST(:after_created AS timestamptz) IS NULL
       OR (created_at, id) > (CAST(:after_created AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY created_at, id
LIMIT :limit

-- name: get_endpoint
SELECT * FROM webhook_endpoints WHERE id = :id AND tenant_id = :tenant_id

-- name: lock_endpoint
-- Changes are read-modify-write under the row lock (a delivery result may be counting).
SELECT * FROM webhook_endpoints WHERE id = :id AND tenant_id = :tenant_id FOR UPDATE

-- name: update_endpoint
UPDATE webhook_endpoints SET
    url = :url,
    description = :description,
    event_types = :event_types,
    enabled = :enabled,
    disabled_reason = :disabled_reason,
    consecutive_failures = :consecutive_failures,
    updated_at = now()
WHERE id = :id
RETURNING *

-- name: rotate_secret
-- The old secret keeps signing (beside the new one) for :grace_seconds.
UPDATE webhook_endpoints SET
    previous_secret = secret,
    previous_secret_expires_at = now() + make_interval(secs => :grace_seconds),
    secret = :secret,
    updated_at = now()
WHERE id = :id AND tenant_id = :tenant_id
RETURNING *

-- name: delete_endpoint
-- Its deliveries go with it (ON DELETE CASCADE, through uq_..._endpoint_id_event_id).
DELETE FROM webhook_endpoints WHERE id = :id AND tenant_id = :tenant_id RETURNING id

-- name: hold_deliveries
-- A disabled endpoint's pending deliveries wait without a next attempt (out of the partial
-- index ix_webhook_deliveries_due, so the claim never scans them) until it is enabled.
UPDATE webhook_deliveries SET next_attempt_at = NULL
WHERE endpoint_id = :endpoint_id AND status = 'pending' AND next_attempt_at IS NOT NULL

-- name: release_deliveries
-- Enabling an endpoint makes its held deliveries due now.
UPDATE webhook_deliveries SET next_attempt_at = now()
WHERE endpoint_id = :endpoint_id AND status = 'pending' AND next_attempt_at IS NULL

-- name: list_deliveries
-- The delivery log, newest first: keyset on (created_at, id) through
-- ix_webhook_deliveries_endpoint_created.
SELECT * FROM webhook_deliveries
WHERE endpoint_id = :endpoint_id
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:before_created AS timestamptz) IS NULL
       OR (created_at, id) < (CAST(:before_created AS timestamptz), CAST(:before_id AS uuid)))
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: get_delivery
SELECT * FROM webhook_deliveries WHERE id = :id AND endpoint_id = :endpoint_id

-- name: replay_delivery
-- A new series of attempts, due now. The event and its payload are the same, and so is
-- webhook-id (the delivery's id): a receiver that already processed it may deduplicate.
UPDATE webhook_deliveries SET
    status = 'pending',
    attempts = 0,
    next_attempt_at = now(),
    finished_at = NULL
WHERE id = :id AND endpoint_id = :endpoint_id
RETURNING *

-- name: any_enabled_endpoint
-- Whether the fan-out has anything to do: it consumes the events topic only while some
-- endpoint is enabled (an installation without webhooks pays no fetch polling and no query
-- per batch). A sequential scan of a small table; stops at the first enabled row.
SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled)

-- name: endpoints_of_tenants
-- The fan-out: the enabled endpoints of the tenants of a batch of events
-- (ix_webhook_endpoints_tenant_created leads with tenant_id). FOR SHARE until the deliveries
-- are inserted: a PATCH that disables an endpoint (FOR UPDATE) waits for them and then holds
-- them too, instead of racing past an insert it cannot see yet. Fan-outs share the lock; the
-- order by id keeps every locker's order the same.
SELECT id, tenant_id, event_types, created_at FROM webhook_endpoints
WHERE tenant_id = ANY(:tenants) AND enabled
ORDER BY id
FOR SHARE

-- name: insert_deliveries
-- One row per (endpoint, event); an event consumed again (at-least-once) adds nothing.
INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, next_attempt_at)
SELECT endpoint_id, event_id, event_type, CAST(payload AS jsonb), now()
FROM unnest(
    CAST(:endpoint_ids AS uuid[]), CAST(:event_ids AS text[]),
    CAST(:event_types AS text[]), CAST(:payloads AS text[])
) AS t (endpoint_id, event_id, event_type, payload)
ON CONFLICT (endpoint_id, event_id) DO NOTHING

-- name: claim_due
-- The delivery loop's claim, as River and Oban lease jobs: due rows oldest first through the
-- partial index ix_webhook_deliveries_due; SKIP LOCKED lets relays claim disjoint rows. The
-- claim commits at once with next_attempt_at pushed :lease_seconds ahead, so no transaction
-- stays open across the HTTP request; a relay that dies mid-request leaves the row due
-- again after the lease (a repeat, never a loss: at least once). attempts counts this try.
WITH due AS (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries AS d SET
    attempts = d.attempts + 1,
    next_attempt_at = now() + make_interval(secs => :lease_seconds),
    last_attempt_at = now()
FROM due, webhook_endpoints AS e
WHERE d.id = due.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.payload, d.attempts, e.url,
    e.secret, CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret END
    AS previous_secret

-- name: record_success
-- Guarded on the attempt this relay claimed: a result that comes back after its lease ran
-- out and another relay claimed the row again changes nothing.
UPDATE webhook_deliveries SET
    status = 'succeeded', next_attempt_at = NULL, finished_at = now(),
    last_status_code = :status_code, last_error = NULL
WHERE id = :id AND attempts = :attempts AND status = 'pending'
RETURNING endpoint_id

-- name: record_retry
UPDATE webhook_deliveries SET
    next_attempt_at = :next_attempt_at, last_status_code = :status_code, last_error = :error
WHERE id = :id AND attempts = :attempts AND status = 'pending'
RETURNING endpoint_id

-- name: record_failure
UPDATE webhook_deliveries SET
    status = 'failed', next_attempt_at = NULL, finished_at = now(),
    last_status_code = :status_code, last_error = :error
WHERE id = :id AND attempts = :attempts AND status = 'pending'
RETURNING endpoint_id

-- name: endpoint_succeeded
-- Written only when there is something to reset: most successes change no endpoint row.
UPDATE webhook_endpoints SET consecutive_failures = 0
WHERE id = :id AND consecutive_failures <> 0

-- name: lock_endpoint_to_record
-- First in every transaction that records a delivery's result: the endpoint's row, then its
-- deliveries, the order disabling (endpoint, then every pending delivery) and a PATCH take.
-- Recording a delivery first and the endpoint second deadlocked against a concurrent
-- delivery's failure that disabled the endpoint (seen under a loaded test run).
SELECT id FROM webhook_endpoints WHERE id = :id FOR UPDATE

-- name: endpoint_failed
UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1
WHERE id = :id
RETURNING consecutive_failures, enabled

-- name: disable_endpoint
UPDATE webhook_endpoints SET enabled = false, disabled_reason = :reason, updated_at = now()
WHERE id = :id AND enabled
RETURNING id

-- name: deliveries_next_due
-- When an idle delivery loop should look again: min() over ix_webhook_deliveries_due is
-- its first entry. The database's clock decides, as in the claim.
SELECT EXTRACT(EPOCH FROM (min(next_attempt_at) - now())) AS seconds
FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at IS NOT NULL

-- name: purge_deliveries
-- Retention: finished deliveries older than :retention_seconds, a batch at a time through
-- ix_webhook_deliveries_finished; SKIP LOCKED leaves rows a replay is changing.
DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE finished_at IS NOT NULL
      AND finished_at < now() - make_interval(secs => :retention_seconds)
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
