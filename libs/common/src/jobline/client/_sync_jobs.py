"""The jobs part of :class:`~jobline.client.Client`: submit, read, list, watch, cancel,
redrive; and what is counted over jobs: dead letters, queues, stats."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from jobline.api.dlq import DlqGroupList
from jobline.api.jobs import (
    MAX_BATCH,
    AttemptOut,
    BackoffIn,
    JobOut,
    JobPage,
    JobState,
)
from jobline.api.queues import QueueList, Stats
from jobline.api.unique import UniquePolicy
from jobline.client import _calls as calls
from jobline.client import batching, pagination, watching
from jobline.client._calls import Id, JobBody, job_fields
from jobline.client._sync_base import SyncBase
from jobline.client._transport import new_idempotency_key
from jobline.client.errors import BatchIncomplete, GatewayError, WaitTimeout
from jobline.client.watching import JobEvent


class SyncJobs(SyncBase):
    """Jobs, dead letters, queues and stats (see :class:`~jobline.client.Client`)."""

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
        unique_key: str | None = None,
        unique_policy: UniquePolicy | str = UniquePolicy.REJECT,
        unique_window: float | None = None,
    ) -> JobOut:
        """Submit one job of ``type``; returns it queued (or scheduled).

        ``unique_key``: at most one unfinished job with it; a duplicate gets
        ``unique_policy`` (``reject``: :class:`~jobline.client.errors.Conflict`, whose
        ``problem.job_id`` is the holder; ``replace``; ``debounce`` with ``unique_window`` seconds:
        the holder is returned). The answer's ``unique_key`` shows it.
        """
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
            unique=calls.unique_fields(unique_key, unique_policy, unique_window),
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
