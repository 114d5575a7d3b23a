"""The synchronous client: ``with Client() as jobline: jobline.submit("echo", {...})``."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from jobline.api.dlq import DlqGroupList
from jobline.api.jobs import (
    MAX_BATCH,
    AttemptOut,
    BackoffIn,
    JobOut,
    JobPage,
    JobState,
)
from jobline.api.keys import KeyCreated, KeyIn, KeyOut, OwnKeyIn, Scope
from jobline.api.queues import QueueList, Stats
from jobline.api.schedules import (
    NextFires,
    ScheduledJobOut,
    ScheduledJobPage,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from jobline.client import _calls as calls
from jobline.client import batching, pagination, watching
from jobline.client._calls import Id, JobBody
from jobline.client._transport import (
    USER_AGENT,
    Call,
    RetryPolicy,
    error_of,
    new_idempotency_key,
    retryable_error,
    unreachable,
    utcnow,
)
from jobline.client.config import api_key, gateway_url
from jobline.client.errors import (
    BatchIncomplete,
    ConfigurationError,
    GatewayError,
    WaitTimeout,
)
from jobline.client.watching import JobEvent

T = TypeVar("T")


def job_fields(
    type: str,
    payload: Mapping[str, Any] | None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay_seconds: float | None = None,
    max_attempts: int | None = None,
    backoff: BackoffIn | Mapping[str, Any] | None = None,
    timeout_seconds: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a job from keyword arguments (unset ones are left to the gateway)."""
    job: dict[str, Any] = {"type": type, "payload": dict(payload or {})}
    for name, value in (
        ("queue", queue),
        ("priority", priority),
        ("delay_seconds", delay_seconds),
        ("max_attempts", max_attempts),
        ("timeout_seconds", timeout_seconds),
    ):
        if value is not None:
            job[name] = value
    if run_at is not None:
        job["run_at"] = run_at.isoformat()
    if backoff is not None:
        job["backoff"] = calls.body(backoff)
    if metadata is not None:
        job["metadata"] = dict(metadata)
    return job


class Client:
    """The gateway's REST API, typed with its models.

    ``base_url`` defaults to JOBLINE_GATEWAY_URL (else http://127.0.0.1:8000) and ``key`` to
    JOBLINE_API_KEY (else the dev stack's key). Calls retry as ``retry`` says (see
    :mod:`jobline.client._transport`); submissions carry an Idempotency-Key, generated per
    call unless given, that stays the same across the call's retries.
    """

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

    def __enter__(self) -> Client:
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

    # --- jobs -------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay_seconds: float | None = None,
        max_attempts: int | None = None,
        backoff: BackoffIn | Mapping[str, Any] | None = None,
        timeout_seconds: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> JobOut:
        """Submit one job of ``type``; returns it queued (or scheduled)."""
        job = job_fields(
            type,
            payload,
            queue=queue,
            priority=priority,
            run_at=run_at,
            delay_seconds=delay_seconds,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout_seconds=timeout_seconds,
            metadata=metadata,
        )
        return self.submit_job(job, idempotency_key=idempotency_key)

    def submit_job(self, spec: JobBody, *, idempotency_key: str | None = None) -> JobOut:
        """Submit one job given as a :class:`JobSpec` or its JSON mapping."""
        key = idempotency_key or new_idempotency_key()
        return self._run(calls.submit_job(spec, key))

    def submit_batch(
        self,
        specs: Iterable[JobBody],
        *,
        chunk_size: int = MAX_BATCH,
        idempotency_key: str | None = None,
    ) -> list[JobOut]:
        """Submit any number of jobs, ``chunk_size`` per request (each chunk all or nothing).

        If a chunk fails, :class:`BatchIncomplete` carries the jobs accepted so far and the
        key: the same call with that ``idempotency_key`` resumes where it stopped.
        """
        key = idempotency_key or new_idempotency_key()
        parts = list(batching.chunks(specs, chunk_size))
        accepted: list[JobOut] = []
        for index, part in enumerate(parts):
            call = calls.submit_batch(part, batching.chunk_key(key, index, len(parts)))
            try:
                accepted += self._run(call).jobs
            except GatewayError as exc:
                if not accepted:
                    raise
                raise BatchIncomplete(
                    f"batch stopped at chunk {index + 1} of {len(parts)} "
                    f"({len(accepted)} jobs accepted): {exc}",
                    accepted=accepted,
                    idempotency_key=key,
                    cause=exc,
                ) from exc
        return accepted

    def get_job(self, job_id: Id) -> JobOut:
        """A job: status, attempts, timings, last error, result, progress."""
        return self._run(calls.get_job(job_id))

    def list_jobs(
        self,
        *,
        status: JobState | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of the tenant's jobs, newest first."""
        return self._run(
            calls.list_jobs(
                status=status,
                type=type,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_jobs(
        self,
        *,
        status: JobState | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int | None = None,
    ) -> Iterator[JobOut]:
        """Every matching job, newest first, fetching pages as the iteration goes."""

        def fetch(cursor: str | None) -> JobPage:
            return self.list_jobs(
                status=status,
                type=type,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
            )

        return pagination.iterate(fetch, lambda page: page.jobs)

    def attempts(self, job_id: Id) -> list[AttemptOut]:
        """Each attempt of a job: worker, start, end, outcome, error."""
        return self._run(calls.attempts(job_id)).attempts

    def cancel_job(self, job_id: Id) -> JobOut:
        """Cancel a job (a running one is asked to stop)."""
        return self._run(calls.cancel_job(job_id))

    def redrive_job(self, job_id: Id) -> JobOut:
        """Send a dead job back to its queue with a fresh attempt budget."""
        return self._run(calls.redrive_job(job_id))

    def job_events(
        self,
        job_id: Id,
        *,
        timeout: float | None = None,
        poll_seconds: float = watching.DEFAULT_POLL_SECONDS,
        max_poll_seconds: float = watching.DEFAULT_MAX_POLL_SECONDS,
    ) -> Iterator[JobEvent]:
        """The job's changes as observed by polling (see :mod:`jobline.client.watching`),
        until it reaches a terminal state; :class:`WaitTimeout` after ``timeout`` seconds."""
        deadline = None if timeout is None else self._clock() + timeout
        previous: JobOut | None = None
        interval = poll_seconds
        while True:
            job = self.get_job(job_id)
            found = watching.changes(previous, job)
            yield from found
            previous = job
            if job.status.terminal:
                return
            interval = watching.next_interval(
                interval, changed=bool(found), first=poll_seconds, most=max_poll_seconds
            )
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    raise WaitTimeout(f"job {job_id} still {job.status} after {timeout}s", job=job)
                interval = min(interval, left)
            self._sleep(interval)

    def wait(
        self,
        job_id: Id,
        *,
        timeout: float | None = None,
        poll_seconds: float = watching.DEFAULT_POLL_SECONDS,
        max_poll_seconds: float = watching.DEFAULT_MAX_POLL_SECONDS,
    ) -> JobOut:
        """Block until the job is succeeded, dead or cancelled; return it."""
        last: JobOut | None = None
        for event in self.job_events(
            job_id, timeout=timeout, poll_seconds=poll_seconds, max_poll_seconds=max_poll_seconds
        ):
            last = event.job
        assert last is not None  # the first read always yields a snapshot
        return last

    # --- dead letters, queues, stats --------------------------------------------------

    def iter_dead_jobs(
        self, *, type: str | None = None, queue: str | None = None, page_size: int | None = None
    ) -> Iterator[JobOut]:
        """The tenant's dead jobs (its dead-letter queue), newest first."""
        return self.iter_jobs(status=JobState.DEAD, type=type, queue=queue, page_size=page_size)

    def dlq_groups(self, *, type: str | None = None, queue: str | None = None) -> DlqGroupList:
        """Dead jobs grouped by type, queue and error class (needs ``GET /v1/dlq/groups``)."""
        return self._run(calls.dlq_groups(type=type, queue=queue))

    def queues(self) -> QueueList:
        """Each queue's job counts and lag (needs ``GET /v1/queues``)."""
        return self._run(calls.queues())

    def stats(self, *, window_seconds: int | None = None) -> Stats:
        """Job counts now and finished within a window (needs ``GET /v1/stats``)."""
        return self._run(calls.stats(window_seconds=window_seconds))

    # --- schedules --------------------------------------------------------------------

    def create_schedule(self, schedule: ScheduleIn | Mapping[str, Any]) -> ScheduleOut:
        """Create a schedule (exactly one of cron or interval_seconds)."""
        return self._run(calls.create_schedule(schedule))

    def list_schedules(
        self, *, name: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> SchedulePage:
        """One page of the tenant's schedules, by name."""
        return self._run(calls.list_schedules(name=name, limit=limit, cursor=cursor))

    def iter_schedules(
        self, *, name: str | None = None, page_size: int | None = None
    ) -> Iterator[ScheduleOut]:
        """Every schedule of the tenant, by name."""

        def fetch(cursor: str | None) -> SchedulePage:
            return self.list_schedules(name=name, limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.schedules)

    def get_schedule(self, schedule_id: Id) -> ScheduleOut:
        """A schedule by id."""
        return self._run(calls.get_schedule(schedule_id))

    def find_schedule(self, id_or_name: Id) -> ScheduleOut:
        """A schedule by id, or else by name (names are unique per tenant)."""
        if calls.is_uuid(id_or_name):
            return self.get_schedule(id_or_name)
        for schedule in self.iter_schedules(name=str(id_or_name)):
            return schedule
        raise calls.no_schedule(id_or_name)

    def update_schedule(
        self, schedule_id: Id, changes: SchedulePatch | Mapping[str, Any]
    ) -> ScheduleOut:
        """Change a schedule; a new timing is planned afresh from now."""
        return self._run(calls.update_schedule(schedule_id, changes))

    def pause_schedule(self, schedule_id: Id) -> ScheduleOut:
        """Stop firing (its pending fire time is kept for resume)."""
        return self._run(calls.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: Id) -> ScheduleOut:
        """Fire again from now; missed times run as the misfire policy says."""
        return self._run(calls.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: Id) -> None:
        """Delete a schedule; the jobs it created stay."""
        self._run(calls.delete_schedule(schedule_id))

    def next_fires(
        self, schedule_id: Id, count: int | None = None, after: datetime | str | None = None
    ) -> NextFires:
        """The next planned fire times, in the schedule's zone and in UTC."""
        return self._run(calls.next_fires(schedule_id, count=count, after=after))

    def schedule_jobs(
        self, schedule_id: Id, *, limit: int | None = None, cursor: str | None = None
    ) -> ScheduledJobPage:
        """One page of the jobs a schedule created, newest fire time first."""
        return self._run(calls.schedule_jobs(schedule_id, limit=limit, cursor=cursor))

    def iter_schedule_jobs(
        self, schedule_id: Id, *, page_size: int | None = None
    ) -> Iterator[ScheduledJobOut]:
        """Every job a schedule created, newest fire time first."""

        def fetch(cursor: str | None) -> ScheduledJobPage:
            return self.schedule_jobs(schedule_id, limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.jobs)

    # --- API keys ---------------------------------------------------------------------

    def create_key(
        self,
        tenant: str,
        scopes: Iterable[Scope | str],
        *,
        name: str = "cli",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        """A new key for ``tenant`` (operator: ``admin`` scope); the secret is in ``.key``."""
        return self._run(calls.create_key(calls.key_body(KeyIn, scopes, name, expires_at, tenant)))

    def list_keys(self, *, tenant: str | None = None) -> list[KeyOut]:
        """API keys of every tenant, or of ``tenant`` (operator), never their secrets."""
        return self._run(calls.list_keys(tenant=tenant)).keys

    def revoke_key(self, key_id: Id) -> KeyOut:
        """Revoke a key (operator); it stops working on the next request."""
        return self._run(calls.revoke_key(key_id))

    def create_own_key(
        self,
        scopes: Iterable[Scope | str],
        *,
        name: str = "cli",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        """A new key for the caller's tenant (needs ``POST /v1/keys``)."""
        return self._run(calls.create_own_key(calls.key_body(OwnKeyIn, scopes, name, expires_at)))

    def list_own_keys(self) -> list[KeyOut]:
        """The caller's tenant's keys (needs ``GET /v1/keys``)."""
        return self._run(calls.list_own_keys()).keys

    def revoke_own_key(self, key_id: Id) -> KeyOut:
        """Revoke one of the tenant's keys (needs ``DELETE /v1/keys/{id}``)."""
        return self._run(calls.revoke_own_key(key_id))

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


__all__ = ["Client", "job_fields"]
