"""The synchronous client: ``with Client() as jobline: jobline.submit("echo", {...})``.

:class:`Client` is put together from one mixin per resource (``_sync_jobs``,
``_sync_schedules``, ``_sync_keys``,
``_sync_governance``, ``_sync_events``, ``_sync_webhooks``,
``_sync_workflows``) over ``_sync_base``, which holds the
connection pool and the retry loop.
"""

from __future__ import annotations

from jobline.client._calls import job_fields, unique_fields
from jobline.client._sync_events import SyncEvents
from jobline.client._sync_governance import SyncGovernance
from jobline.client._sync_jobs import SyncJobs
from jobline.client._sync_keys import SyncKeys
from jobline.client._sync_schedules import SyncSchedules
from jobline.client._sync_webhooks import SyncWebhooks
from jobline.client._sync_workflows import SyncWorkflows


class Client(
    SyncJobs, SyncSchedules, SyncKeys, SyncGovernance, SyncEvents, SyncWebhooks, SyncWorkflows
):
    """The gateway's REST API, typed with its models.

    ``base_url`` defaults to JOBLINE_GATEWAY_URL (else http://127.0.0.1:8000) and ``key`` to
    JOBLINE_API_KEY (else the dev stack's key). Calls retry as ``retry`` says (see
    :mod:`jobline.client._transport`); submissions carry an Idempotency-Key, generated per
    call unless given, that stays the same across the call's retries.
    """


__all__ = ["Client", "job_fields", "unique_fields"]
