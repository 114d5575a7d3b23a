"""What :class:`~jobline.client.Client` and :class:`~jobline.client.AsyncClient` share: the
description of one call, when to retry it and for how long, and how an answer becomes a
model or an exception. Only the sending and the sleeping differ between the two, so every
rule here is a plain function, tested without I/O.

Retries (full jitter, AWS's "exponential backoff and jitter"):

* A connection that never carried the request (refused, connect timeout, no pooled
  connection) is retried for every call: the gateway cannot have acted on it.
* 429 and 503 are retried for every call: the gateway refused before doing anything (rate
  limit; database unavailable), and says when to come back in ``Retry-After``.
* 502, 504, other 5xx and a connection lost after sending are retried only for calls that are
  safe to repeat: reads, deletes, idempotent updates, and submissions, which always carry an
  ``Idempotency-Key`` (the client's own, reused on each retry, unless the caller gave one).
* Each wait is uniform in ``[0, min(max_delay, base * 2**(n-1))]``, and at least the
  ``Retry-After`` the gateway sent (seconds or an HTTP date). Attempts and the total time
  are bounded; a ``Retry-After`` past the budget ends the retries at once.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any, Final, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from jobline.api.problems import Problem
from jobline.client.errors import (
    ApiError,
    GatewayError,
    GatewayUnreachable,
    RouteNotServed,
    error_class,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
USER_AGENT: Final = "jobline-client/0.1"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Nothing reached the gateway: safe to send again whatever the call.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Refused before any work, and said so: safe to send again whatever the call.
_REFUSED: Final = frozenset({429, 503})
# Starlette's own answer for a path or method no route declares.
_NO_ROUTE_DETAILS: Final = frozenset({"Not Found", "Method Not Allowed"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long the client retries one call (all configurable)."""

    max_attempts: int = 5
    """Tries in all, the first included; 1 disables retries."""
    max_elapsed_seconds: float = 30.0
    """No retry starts later than this after the first try began."""
    base_delay_seconds: float = 0.1
    max_delay_seconds: float = 5.0
    retry_statuses: frozenset[int] = frozenset({429, 502, 503, 504})
    """Statuses retried (429/503 for every call; the others only for calls safe to repeat)."""
    retry_other_5xx: bool = True
    """Whether other 5xx are retried for calls safe to repeat."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < self.base_delay_seconds:
            raise ValueError("need 0 <= base_delay_seconds <= max_delay_seconds")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter after try number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** min(attempt - 1, 32))
        return rng.uniform(0.0, ceiling)

    def retryable_status(self, status: int, *, safe: bool) -> bool:
        if status in _REFUSED and status in self.retry_statuses:
            return True
        if not safe:
            return False
        return status in self.retry_statuses or (self.retry_other_5xx and status >= 500)

    def delay(
        self,
        *,
        attempt: int,
        elapsed: float,
        rng: random.Random,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds to wait before the next try, or None: give up (attempts or time spent)."""
        if attempt >= self.max_attempts:
            return None
        wait = self.backoff(attempt, rng)
        if retry_after is not None:
            wait = max(wait, retry_after)
        if elapsed + wait > self.max_elapsed_seconds:
            return None
        return wait


NO_RETRIES: Final = RetryPolicy(max_attempts=1)


def retryable_error(error: httpx.TransportError, *, safe: bool) -> bool:
    """Whether a transport failure may be retried: always if nothing was sent."""
    return isinstance(error, _NOT_SENT) or safe


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date; None if absent
    or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)


def new_idempotency_key() -> str:
    """A fresh key for one logical call (Stripe style: random, reused on that call's retries)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API call: the request, whether it is safe to repeat, and how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    idempotency_key: str | None = None
    idempotent: bool = False
    """Safe to repeat even without a key (e.g. pause, resume, an update)."""
    planned: bool = False
    """A route not every gateway serves yet: a 404/405 for the path is RouteNotServed."""
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        return self.idempotent or self.method in _SAFE_METHODS or self.idempotency_key is not None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        headers = dict(self.headers)
        if self.idempotency_key is not None:
            headers[IDEMPOTENCY_HEADER] = self.idempotency_key
        return http.build_request(
            self.method,
            self.path,
            params=_query(self.params) if self.params else None,
            json=self.json,
            headers=headers or None,
        )


def _query(params: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif isinstance(value, Enum):
            out[key] = str(value.value)
        else:
            out[key] = str(value)
    return out


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    """Read the answer's JSON body as ``cls``."""

    def parse(response: httpx.Response) -> M:
        try:
            return cls.model_validate_json(response.content)
        except ValidationError as exc:
            raise GatewayError(
                f"unexpected answer to {response.request.method} {response.request.url.path}: "
                f"not a {cls.__name__}: {exc.error_count()} problem(s), first: "
                f"{exc.errors()[0]['msg']}"
            ) from None

    return parse


def nothing(response: httpx.Response) -> None:
    """For answers without a body (204)."""


def error_of(call: Call[Any], response: httpx.Response, attempts: int, now: datetime) -> ApiError:
    """The exception for an error answer, naming the problem (and its fields)."""
    problem = _problem(response)
    status = response.status_code
    cls = error_class(status)
    if call.planned and status in (404, 405) and problem.detail in _NO_ROUTE_DETAILS:
        cls = RouteNotServed
        message = (
            f"the gateway at {response.request.url.scheme}://{response.request.url.netloc.decode()}"
            f" does not serve {call.method} {_template(call.path)} yet"
        )
    else:
        message = f"{status}: {problem.detail or problem.title or response.reason_phrase}"
        fields = [e.field for e in problem.errors or []]
        if fields and "invalid: " not in message:  # the validation detail names them already
            message += f" ({', '.join(fields)})"
    return cls(
        message,
        status=status,
        problem=problem,
        method=call.method,
        path=call.path,
        attempts=attempts,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), now),
    )


def unreachable(url: httpx.URL, error: httpx.TransportError, attempts: int) -> GatewayUnreachable:
    tries = f" after {attempts} tries" if attempts > 1 else ""
    return GatewayUnreachable(
        f"gateway at {url} unreachable{tries}: {error or type(error).__name__}",
        url=str(url),
        attempts=attempts,
    )


def _problem(response: httpx.Response) -> Problem:
    try:
        return Problem.model_validate_json(response.content)
    except ValidationError:
        text = response.text[:200].strip()
        return Problem(status=response.status_code, detail=text or response.reason_phrase)


def _template(path: str) -> str:
    """The route's path with ids shown as placeholders (for messages)."""
    parts = []
    for part in path.split("/"):
        try:
            uuid.UUID(part)
        except ValueError:
            parts.append(part)
        else:
            parts.append("{id}")
    return "/".join(parts)


def utcnow() -> datetime:
    return datetime.now(UTC)
