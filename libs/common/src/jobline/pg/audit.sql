-- The audit log (jobline.pg.audit).

-- name: record
-- Written in the transaction of the action it records, so an entry exists iff the action
-- committed.
INSERT INTO audit_log (key_id, tenant_id, action, target, address, detail)
VALUES (:key_id, :tenant_id, :action, :target, :address, CAST(:detail AS jsonb))

-- name: list
-- Newest first, keyset-paginated on (at, id): ix_audit_log_at_id, or
-- ix_audit_log_tenant_at_id when a tenant is given. Each filter is optional (NULL).
SELECT id, at, key_id, tenant_id, action, target, address, detail
FROM audit_log
WHERE (CAST(:tenant_id AS text) IS NULL OR tenant_id = CAST(:tenant_id AS text))
  AND (CAST(:action AS text) IS NULL OR action = CAST(:action AS text))
  AND (CAST(:key_id AS uuid) IS NULL OR key_id = CAST(:key_id AS uuid))
  AND (CAST(:target AS text) IS NULL OR target = CAST(:target AS text))
  AND (CAST(:since AS timestamptz) IS NULL OR at >= CAST(:since AS timestamptz))
  AND (CAST(:until AS timestamptz) IS NULL OR at < CAST(:until AS timestamptz))
  AND (CAST(:after_at AS timestamptz) IS NULL
       OR (at, id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid)))
ORDER BY at DESC, id DESC
LIMIT :limit
