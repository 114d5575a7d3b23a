"""The asynchronous client: ``async with AsyncClient() as jobline: await jobline.submit(...)``.

The same surface as :class:`~jobline.client.Client`, method for method; iterators are async.

:class:`AsyncClient` is put together from one mixin per resource (``_aio_jobs``,
``_aio_schedules``, ``_aio_keys``,
``_aio_governance``, ``_aio_events``, ``_aio_webhooks``,
``_aio_workflows``) over ``_aio_base``, which holds the
connection pool and the retry loop.
"""

from __future__ import annotations

from jobline.client._aio_events import AsyncEvents
from jobline.client._aio_governance import AsyncGovernance
from jobline.client._aio_jobs import AsyncJobs
from jobline.client._aio_keys import AsyncKeys
from jobline.client._aio_schedules import AsyncSchedules
from jobline.client._aio_webhooks import AsyncWebhooks
from jobline.client._aio_workflows import AsyncWorkflows


class AsyncClient(
    AsyncJobs,
    AsyncSchedules,
    AsyncKeys,
    AsyncGovernance,
    AsyncEvents,
    AsyncWebhooks,
    AsyncWorkflows,
):
    """The gateway's REST API, typed with its models, for asyncio.

    ``base_url`` defaults to JOBLINE_GATEWAY_URL (else http://127.0.0.1:8000) and ``key`` to
    JOBLINE_API_KEY (else the dev stack's key). Calls retry as ``retry`` says (see
    :mod:`jobline.client._transport`); submissions carry an Idempotency-Key, generated per
    call unless given, that stays the same across the call's retries.
    """


__all__ = ["AsyncClient"]
