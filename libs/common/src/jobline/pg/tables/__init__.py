"""The database schema in code: SQLAlchemy Core tables, the single description queries use.

The migrations in ``jobline/pg/migrations`` create exactly this schema, and the migration test
compares the two. One :class:`MetaData` (:data:`metadata`) holds every table; each area's
tables are in a module of their own:

- :mod:`~jobline.pg.tables.conventions`: the metadata, constraint naming and column builders;
- :mod:`~jobline.pg.tables.tenants`: tenants and API keys;
- :mod:`~jobline.pg.tables.schedules`: schedules;
- :mod:`~jobline.pg.tables.jobs`: jobs, attempts, idempotency keys, the outbox, type policies;
- :mod:`~jobline.pg.tables.registry`: declared queues and registered job types;
- :mod:`~jobline.pg.tables.analyzer`: the AI analyzer's tables;
- :mod:`~jobline.pg.tables.limits`: tenant quotas, the shared submission bucket, and the
  gates of job concurrency and rate limits;
- :mod:`~jobline.pg.tables.audit`: the audit log;
- :mod:`~jobline.pg.tables.webhooks`: webhook endpoints and their deliveries.

What Core cannot express lives only in the migrations (the outbox's trigger that wakes the
relay: see :mod:`~jobline.pg.tables.jobs`).
"""

from __future__ import annotations

from typing import Final

# Imported in the order the tables join the metadata: each after those it references.
# isort: off
from jobline.pg.tables.conventions import NAMING_CONVENTION, metadata
from jobline.pg.tables.tenants import api_keys, tenants
from jobline.pg.tables.schedules import MISFIRE_POLICIES, OVERLAP_POLICIES, schedules
from jobline.pg.tables.jobs import (
    ATTEMPT_OUTCOMES,
    JOB_STATES,
    idempotency_keys,
    job_attempts,
    job_type_policies,
    jobs,
    outbox,
    outbox_set_aside,
)
from jobline.pg.tables.registry import TYPE_SOURCES, job_types, queues
from jobline.pg.tables.analyzer import (
    ANALYZER_TABLES,
    analyzer_attempts,
    analyzer_detector_state,
    analyzer_error_rollups,
    analyzer_findings,
    analyzer_jobs,
    analyzer_recommendations,
    analyzer_rollups,
    analyzer_seen_events,
)
from jobline.pg.tables.limits import (
    job_type_limits,
    limit_gates,
    outbox_parked,
    rate_starts,
    tenant_quotas,
    tenant_rate_buckets,
)
from jobline.pg.tables.audit import audit_log
from jobline.pg.tables.webhooks import DELIVERY_STATUSES, webhook_deliveries, webhook_endpoints
from jobline.pg.tables.workflows import (
    EDGE_OUTCOMES,
    FAILURE_POLICIES,
    WORKFLOW_STATES,
    job_dependencies,
    workflows,
)
# isort: on

# Tables in creation order (each after those it references).
ALL_TABLES: Final = (
    tenants,
    api_keys,
    schedules,
    jobs,
    idempotency_keys,
    job_attempts,
    outbox,
    outbox_set_aside,
    job_type_policies,
    *ANALYZER_TABLES,
    tenant_quotas,
    tenant_rate_buckets,
    audit_log,
    queues,
    job_types,
    webhook_endpoints,
    webhook_deliveries,
    workflows,
    job_dependencies,
    limit_gates,
    rate_starts,
    job_type_limits,
    outbox_parked,
)


__all__ = [
    "ALL_TABLES",
    "ANALYZER_TABLES",
    "ATTEMPT_OUTCOMES",
    "DELIVERY_STATUSES",
    "EDGE_OUTCOMES",
    "FAILURE_POLICIES",
    "JOB_STATES",
    "MISFIRE_POLICIES",
    "NAMING_CONVENTION",
    "OVERLAP_POLICIES",
    "TYPE_SOURCES",
    "WORKFLOW_STATES",
    "analyzer_attempts",
    "analyzer_detector_state",
    "analyzer_error_rollups",
    "analyzer_findings",
    "analyzer_jobs",
    "analyzer_recommendations",
    "analyzer_rollups",
    "analyzer_seen_events",
    "api_keys",
    "audit_log",
    "idempotency_keys",
    "job_attempts",
    "job_dependencies",
    "job_type_limits",
    "job_type_policies",
    "job_types",
    "jobs",
    "limit_gates",
    "metadata",
    "outbox",
    "outbox_parked",
    "outbox_set_aside",
    "queues",
    "rate_starts",
    "schedules",
    "tenant_quotas",
    "tenant_rate_buckets",
    "tenants",
    "webhook_deliveries",
    "webhook_endpoints",
    "workflows",
]
