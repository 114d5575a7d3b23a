"""The lifecycle events part of :class:`~jobline.client.AsyncClient`: ``stream_events``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx

from jobline.client import _calls as calls
from jobline.client import streaming
from jobline.client._aio_base import AsyncBase
from jobline.client._calls import Id
from jobline.client._transport import error_of, unreachable, utcnow
from jobline.client.errors import ConfigurationError
from jobline.client.streaming import FrameParser, Reconnects, StreamedEvent


class AsyncEvents(AsyncBase):
    """Lifecycle events (see :class:`~jobline.client.AsyncClient`)."""

    async def stream_events(
        self,
        *,
        event_types: Sequence[str] | str | None = None,
        job_id: Id | None = None,
        job_type: str | None = None,
        queue: str | None = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
        read_timeout: float = streaming.DEFAULT_READ_TIMEOUT,
    ) -> AsyncIterator[StreamedEvent]:
        """The tenant's lifecycle events as they happen (``GET /v1/events/stream``), from now
        or right after ``last_event_id`` (a :attr:`StreamedEvent.id`).

        With ``reconnect`` (the default) a dropped connection or a gateway that ends the
        stream (a restart) is reconnected from the last position, so nothing is lost or
        repeated; failures in a row are bounded by the client's retry policy. Never ends by
        itself then: break out of the loop.
        """
        params = streaming.stream_params(
            event_types=event_types, job_id=job_id, job_type=job_type, queue=queue
        )
        position = last_event_id
        reconnects = Reconnects(self.retry, self._clock, self._rng)
        timeout = httpx.Timeout(self._http.timeout.connect, read=read_timeout)
        while True:
            call = calls.stream_events(params, position)
            request = call.request(self._http)
            request.extensions["timeout"] = timeout.as_dict()
            parser = FrameParser()
            try:
                response = await self._http.send(request, stream=True)
            except httpx.UnsupportedProtocol as exc:
                raise ConfigurationError(f"bad gateway URL {self._http.base_url}: {exc}") from None
            except httpx.TransportError as exc:
                wait = reconnects.after_failure() if reconnect else None
                if wait is None:
                    raise unreachable(self._http.base_url, exc, reconnects.failures) from None
                await self._sleep(wait)
                continue
            try:
                if response.status_code >= 400:
                    await response.aread()
                    error = error_of(call, response, reconnects.failures + 1, utcnow())
                    retryable = self.retry.retryable_status(response.status_code, safe=True)
                    wait = (
                        reconnects.after_failure(error.retry_after)
                        if reconnect and retryable
                        else None
                    )
                    if wait is None:
                        raise error
                    await self._sleep(wait)
                    continue
                reconnects.connected()
                async for line in response.aiter_lines():
                    frame = parser.feed(line)
                    if frame is None:
                        continue
                    position = frame.id or position
                    event = streaming.event_of(frame)
                    if event is not None:
                        yield event
            except httpx.TransportError as exc:  # the connection broke mid-stream
                wait = reconnects.after_failure() if reconnect else None
                if wait is None:
                    raise unreachable(self._http.base_url, exc, reconnects.failures) from None
                await self._sleep(wait)
                continue
            finally:
                await response.aclose()
            if not reconnect:
                return
            await self._sleep(streaming.reconnect_delay(parser))
