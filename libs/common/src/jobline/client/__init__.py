"""The Python client of Jobline's REST API: :class:`Client` (sync) and :class:`AsyncClient`
(asyncio), with the same methods, typed with the API's models (:mod:`jobline.api`).

``pip install``-able on its own: it imports httpx, pydantic and :mod:`jobline.api` only.

    from jobline.client import Client

    with Client() as jobline:            # JOBLINE_GATEWAY_URL, JOBLINE_API_KEY, or the dev stack
        job = jobline.submit("echo", {"hello": "world"})
        done = jobline.wait(job.id, timeout=30)
        print(done.status, done.result)

Submissions carry an Idempotency-Key (generated per call, reused on its retries); calls retry
on connection errors, 429 and 503 (and on 502/504/5xx when safe to repeat), with full jitter
and ``Retry-After``. Errors are :class:`GatewayError` subclasses naming the problem.
"""

from jobline.client._transport import NO_RETRIES, RetryPolicy, parse_retry_after
from jobline.client.aio import AsyncClient
from jobline.client.config import DEFAULT_URL, api_key, gateway_url
from jobline.client.errors import (
    ApiError,
    BatchIncomplete,
    ConfigurationError,
    Conflict,
    Forbidden,
    GatewayError,
    GatewayUnreachable,
    InvalidRequest,
    NotFound,
    RateLimited,
    RouteNotServed,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from jobline.client.streaming import StreamedEvent
from jobline.client.sync import Client
from jobline.client.watching import JobEvent

__all__ = [
    "DEFAULT_URL",
    "NO_RETRIES",
    "ApiError",
    "AsyncClient",
    "BatchIncomplete",
    "Client",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "GatewayError",
    "GatewayUnreachable",
    "InvalidRequest",
    "JobEvent",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "RouteNotServed",
    "ServerError",
    "StreamedEvent",
    "Unauthorized",
    "WaitTimeout",
    "api_key",
    "gateway_url",
    "parse_retry_after",
]
