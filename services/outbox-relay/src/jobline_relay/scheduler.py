"""The scheduler: fire due recurring schedules, exactly one job per planned time.

Each round claims due schedules (``FOR UPDATE SKIP LOCKED``, oldest ``next_fire_at`` first),
asks the pure planner (:func:`jobline.schedules.plan_fires`) what to fire at the database's
``now()``, and in the claim's transaction inserts one job per fire time (with its outbox rows),
then moves the schedule's ``next_fire_at``. The row lock keeps every other relay off the
schedule until that commits, so replicas never plan from the same state; and
``UNIQUE (schedule_id, fire_time)`` on jobs is the safety net behind it: a fire time that
already has a job (a repeat after some inconsistency) is found by a probe of that index and
skipped. Any number of relays, any crash: one job per fire time.

Between rounds the scheduler sleeps until the earliest ``next_fire_at`` (asked of the database,
one index probe), never longer than its poll interval, so an every-second schedule fires every
second and a schedule created or resumed through the gateway is seen within the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from jobline.core import jobdefaults, states
from jobline.core.backoff import BackoffPolicy
from jobline.core.errors import InvalidSchedule
from jobline.core.job import Job, JobState
from jobline.core.jobdefaults import PLATFORM_DEFAULTS, JobDefaults, TypePolicy
from jobline.core.schedules import FirePlan, OverlapPolicy, fire_key, plan_fires, spec_from_row
from jobline.pg import jobstore
from jobline.pg.db import Conn, Database
from jobline.pg.queries import SQL as SHARED
from jobline_relay import metrics
from jobline_relay.queries import SQL

log = logging.getLogger(__name__)


# The shortest wait between rounds (see Scheduler._idle_timeout).
MIN_SLEEP_SECONDS = 0.02
# asyncio may wake a hair early; a due time must be <= now() when we claim.
_WAKE_SLACK_SECONDS = 0.002


def job_of(
    row: Mapping[Any, Any],
    fire_time: datetime,
    now: datetime,
    policy: TypePolicy | None,
    defaults: JobDefaults,
) -> Job:
    """The job a schedule fires for ``fire_time``: the template's fields, then the tenant's
    type policy, then the platform defaults (the rule every submission follows)."""
    template: dict[str, Any] = row["job_template"]
    resolved = jobdefaults.resolve(
        defaults,
        policy,
        max_attempts=template.get("max_attempts"),
        backoff=template.get("backoff"),
        timeout_seconds=template.get("timeout_seconds"),
    )
    return Job(
        id=uuid4(),
        tenant_id=row["tenant_id"],
        type=template["type"],
        queue=template.get("queue") or "default",
        state=JobState.QUEUED,  # submit() decides
        payload=template.get("payload") or {},
        created_at=now,
        run_at=fire_time,  # <= now: queued at once, and its timings show the planned time
        max_attempts=resolved.max_attempts,
        backoff=resolved.backoff,
        timeout_seconds=resolved.timeout_seconds,
        metadata={"schedule_id": str(row["id"]), "fire_time": fire_time.isoformat()},
    )


@dataclass(frozen=True, slots=True)
class Fired:
    """What one schedule's planning did (counted in metrics once committed)."""

    schedule_id: UUID
    policy: str
    fired_at: datetime
    plan: FirePlan
    created: tuple[datetime, ...]
    duplicates: int
    # Fire times that made no job: the template does not resolve (see _fire_one).
    unresolved: int = 0


async def fire_due(
    db: Database, limit: int, defaults: JobDefaults = PLATFORM_DEFAULTS
) -> tuple[int, list[Fired]]:
    """One round in one transaction: (schedules claimed, what each fired)."""
    results: list[Fired] = []
    async with db.transaction() as conn:
        rows = await SQL.fetch(conn, "claim_due_schedules", limit=limit)
        for row in rows:
            # A savepoint per schedule: one that fails is rolled back alone and retried next
            # round; the others of the round still commit.
            try:
                async with conn.transaction():
                    results.append(await _fire_one(conn, row, defaults))
            except Exception:
                metrics.SCHEDULE_ERRORS.inc()
                log.exception("firing schedule %s failed; retrying next round", row["id"])
    for fired in results:
        _observe(fired)
    return len(rows), results


async def _fire_one(conn: Conn, row: Mapping[str, Any], defaults: JobDefaults) -> Fired:
    now: datetime = row["db_now"]
    schedule_id: UUID = row["id"]
    try:
        spec = spec_from_row(row)
    except InvalidSchedule as exc:
        # Stored before a rule changed (e.g. a time zone withdrawn from tzdata): it can never
        # fire again, so stop planning it instead of failing every round.
        log.error("schedule %s is no longer valid, not firing it: %s", schedule_id, exc)
        await SQL.execute(
            conn, "advance_schedule", id=schedule_id, next_fire_at=None, last_fired_at=None
        )
        return Fired(schedule_id, row["misfire_policy"], now, FirePlan((), 0, 0, None), (), 0)
    running = False
    if spec.overlap_policy is OverlapPolicy.SKIP_IF_RUNNING:
        running = bool(await SQL.fetchval(conn, "schedule_has_active_job", schedule_id=schedule_id))
    plan = plan_fires(spec, row["next_fire_at"], now, running=running)
    created: list[datetime] = []
    duplicates = unresolved = 0
    jobs: dict[datetime, Job] = {}
    if plan.fire_times:
        policy = await _type_policy(conn, row)
        try:
            jobs = {t: job_of(row, t, now, policy, defaults) for t in plan.fire_times}
        except ValueError as exc:
            # The template's partial backoff contradicts the one it inherits now (the
            # tenant's type policy or the defaults changed since the gateway accepted it).
            # Raising would retry this schedule every round for ever and never move it;
            # instead these times make no job (logged, counted) and the schedule moves on,
            # firing again as soon as the template resolves.
            unresolved = len(plan.fire_times)
            metrics.SCHEDULE_ERRORS.inc()
            log.error(
                "schedule %s: its job template does not resolve (%s); %d fire times skipped",
                schedule_id,
                exc,
                unresolved,
            )
        for fire_time, job in jobs.items():
            if await SQL.fetchval(
                conn, "schedule_fired", schedule_id=schedule_id, fire_time=fire_time
            ):
                duplicates += 1  # this fire time already has its job
                continue
            submitted = states.submit(job, now)
            await jobstore.insert(
                conn,
                [submitted],
                schedule_id=schedule_id,
                fire_time=fire_time,
                idempotency_key=fire_key(schedule_id, fire_time),
            )
            created.append(fire_time)
    await SQL.execute(
        conn,
        "advance_schedule",
        id=schedule_id,
        next_fire_at=plan.next_fire_at,
        last_fired_at=created[-1] if created else None,
    )
    return Fired(
        schedule_id, spec.misfire_policy.value, now, plan, tuple(created), duplicates, unresolved
    )


async def _type_policy(conn: Conn, row: Mapping[str, Any]) -> TypePolicy | None:
    template_type = row["job_template"]["type"]
    found = await SHARED.fetch(
        conn, "type_policies", tenant_id=row["tenant_id"], types=[template_type]
    )
    if not found:
        return None
    backoff = BackoffPolicy.from_dict(found[0]["backoff"]) if found[0]["backoff"] else None
    return TypePolicy(found[0]["max_attempts"], backoff)


def _observe(fired: Fired) -> None:
    policy = fired.policy
    if fired.created:
        metrics.SCHEDULE_FIRES.labels(misfire_policy=policy).inc(len(fired.created))
    for fire_time in fired.created:
        metrics.SCHEDULE_FIRE_LAG.observe((fired.fired_at - fire_time).total_seconds())
    if fired.plan.missed:
        metrics.SCHEDULE_MISFIRES.labels(misfire_policy=policy).inc(fired.plan.missed)
    if fired.plan.overlap_skipped:
        metrics.SCHEDULE_OVERLAP_SKIPS.inc(fired.plan.overlap_skipped)
    if fired.duplicates:
        metrics.SCHEDULE_DUPLICATES.inc(fired.duplicates)
    if fired.plan.missed:
        log.info(
            "schedule %s: %d planned times missed, %d dropped (%s), %d fired",
            fired.schedule_id,
            fired.plan.missed,
            fired.plan.dropped,
            policy,
            len(fired.created),
        )


async def seconds_until_due(db: Database) -> float | None:
    """Seconds until the earliest unpaused schedule is due (<= 0: now), None if none is."""
    async with db.connection() as conn:
        seconds = await SQL.fetchval(conn, "schedules_next_due")
    return float(seconds) if seconds is not None else None


class Scheduler:
    """The firing loop of one relay replica."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int,
        poll_interval: float,
        defaults: JobDefaults = PLATFORM_DEFAULTS,
    ) -> None:
        self.defaults = defaults
        self.db = db
        self.batch_size = batch_size
        self.poll_interval = poll_interval

    async def run(self, stopping: asyncio.Event) -> None:
        """Fire due schedules until ``stopping`` is set; a failed round is retried."""
        while not stopping.is_set():
            try:
                claimed, _ = await fire_due(self.db, self.batch_size, self.defaults)
                if claimed >= self.batch_size:
                    continue  # more may be due: go on without waiting
                wait = await self._idle_timeout()
            except Exception as exc:  # the database may be down: try again after a pause
                log.warning("scheduler round failed: %s: %s", type(exc).__name__, exc)
                wait = self.poll_interval
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await stopping.wait()

    async def _idle_timeout(self) -> float:
        seconds = await seconds_until_due(self.db)
        if seconds is None:
            return self.poll_interval
        # The floor: something due that this round did not claim is held by another relay
        # until its commit; looking again at once would only spin.
        return min(self.poll_interval, max(seconds + _WAKE_SLACK_SECONDS, MIN_SLEEP_SECONDS))
