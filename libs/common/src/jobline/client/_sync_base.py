"""What :class:`~jobline.client.Client` stands on: its connection pool, the context manager,
and ``_run``, the retry loop every call goes through (the rules are plain functions in
:mod:`jobline.client._transport`). Each resource mixin subclasses it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from jobline.client._transport import (
    USER_AGENT,
    Call,
    RetryPolicy,
    error_of,
    retryable_error,
    unreachable,
    utcnow,
)
from jobline.client.config import api_key, gateway_url
from jobline.client.errors import ConfigurationError

T = TypeVar("T")


class SyncBase:
    """The connection pool and retry loop of :class:`~jobline.client.Client`."""

    def __init__(
        self,
        base_url: str | None = None,
        key: str | None = None,
        *,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url or gateway_url(),
            headers={
                "Authorization": f"Bearer {key or api_key()}",
                "User-Agent": USER_AGENT,
                **(headers or {}),
            },
            timeout=timeout,
            transport=transport,
        )
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    @property
    def base_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- transport --------------------------------------------------------------------

    def _run(self, call: Call[T]) -> T:
        return call.parse(self._send(call))

    def _send(self, call: Call[Any]) -> httpx.Response:
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.send(call.request(self._http))
            except httpx.UnsupportedProtocol as exc:
                raise ConfigurationError(f"bad gateway URL {self._http.base_url}: {exc}") from None
            except httpx.TransportError as exc:
                wait = None
                if retryable_error(exc, safe=call.safe):
                    wait = self.retry.delay(
                        attempt=attempt, elapsed=self._clock() - started, rng=self._rng
                    )
                if wait is None:
                    raise unreachable(self._http.base_url, exc, attempt) from None
                self._sleep(wait)
                continue
            if response.status_code < 400:
                return response
            error = error_of(call, response, attempt, utcnow())
            if self.retry.retryable_status(response.status_code, safe=call.safe):
                wait = self.retry.delay(
                    attempt=attempt,
                    elapsed=self._clock() - started,
                    rng=self._rng,
                    retry_after=error.retry_after,
                )
                if wait is not None:
                    self._sleep(wait)
                    continue
            raise error
