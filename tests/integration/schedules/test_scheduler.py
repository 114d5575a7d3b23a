"""The relay's scheduler in-process against real PostgreSQL: misfire policies, overlap,
the unique safety net, concurrent rounds, outbox rows."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any
from uuid import UUID

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.envelope import WorkEnvelope
from jobline.core.jobdefaults import JobDefaults
from jobline.core.schedules import fire_key
from jobline.core.states import Cancel
from jobline.pg import jobstore
from jobline.pg.db import Database
from jobline_relay.scheduler import Fired, fire_due
from tests.integration.schedules.helpers import (
    S,
    db_now,
    fire_times,
    new_schedule,
    schedule_row,
    set_paused,
)


async def round_for(db: Database, sid: UUID) -> Fired:
    _, fired = await fire_due(db, 1000)
    return next(f for f in fired if f.schedule_id == sid)


async def set_next_fire_at(db: Database, sid: UUID, when: datetime) -> None:
    async with db.connection() as conn:
        await conn.execute("UPDATE schedules SET next_fire_at = $1 WHERE id = $2", when, sid)


async def test_skip_fires_only_the_latest_time(db):
    sid, _ = await new_schedule(db, behind=10, misfire_policy="skip")
    fired = await round_for(db, sid)
    times = await fire_times(db, sid)
    assert len(times) == 1
    assert fired.plan.missed == 10
    assert fired.plan.dropped == 10
    row = await schedule_row(db, sid)
    assert row["next_fire_at"] == times[0] + S
    assert row["last_fired_at"] == times[0]


async def test_fire_once_makes_up_once(db):
    sid, _ = await new_schedule(db, behind=10, misfire_policy="fire_once")
    fired = await round_for(db, sid)
    times = await fire_times(db, sid)
    # One make-up run for the 10 missed (keyed by the latest of them), plus the on-time one.
    assert len(times) == 2
    assert times[1] - times[0] == S
    assert fired.plan.missed == 10
    assert fired.plan.dropped == 9


async def test_catch_up_fires_every_missed_time_up_to_the_limit(db):
    sid, _ = await new_schedule(db, behind=10, misfire_policy="catch_up")
    await round_for(db, sid)
    times = await fire_times(db, sid)
    assert len(times) == 11
    assert all(b - a == S for a, b in itertools.pairwise(times))
    limited, _ = await new_schedule(db, behind=10, misfire_policy="catch_up", catch_up_limit=4)
    await round_for(db, limited)
    times = await fire_times(db, limited)
    assert len(times) == 5
    assert times[-1] - times[0] == 4 * S


async def test_each_job_has_its_key_template_and_outbox_row(db):
    sid, _ = await new_schedule(
        db,
        behind=0,
        job_template={
            "type": "tick",
            "payload": {"a": 1},
            "queue": "ticks",
            "max_attempts": 2,
            "timeout_seconds": 9,
        },
    )
    await round_for(db, sid)
    async with db.connection() as conn:
        (row,) = await conn.fetch("SELECT * FROM jobs WHERE schedule_id = $1", sid)
        outbox = await conn.fetch(
            "SELECT topics, payloads FROM outbox WHERE job_id = $1 ORDER BY id", row["id"]
        )
    assert row["idempotency_key"] == fire_key(sid, row["fire_time"])
    assert (
        row["type"],
        row["queue"],
        row["payload"],
        row["max_attempts"],
        row["timeout_seconds"],
    ) == ("tick", "ticks", {"a": 1}, 2, 9)
    assert row["state"] == "queued"
    assert row["run_at"] == row["fire_time"]
    # The "queued" event and the work message, in that order (one row: due together).
    messages = [m for r in outbox for m in zip(r["topics"], r["payloads"], strict=True)]
    assert [topic for topic, _ in messages] == ["events", "jobs.ticks"]
    envelope = WorkEnvelope.decode(bytes(messages[1][1]))
    assert (envelope.id, envelope.attempt, envelope.payload) == (row["id"], 1, {"a": 1})


async def test_an_existing_job_for_a_fire_time_is_absorbed(db):
    """The safety net: a fire time that already has its job (UNIQUE (schedule_id, fire_time))
    is skipped in its own savepoint; the others fire and the schedule moves on."""
    sid, _ = await new_schedule(db, behind=3, misfire_policy="catch_up")
    first = (await schedule_row(db, sid))["next_fire_at"]
    async with db.connection() as conn:  # a job for the oldest planned time exists
        await conn.execute(
            "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts, backoff,"
            " timeout_seconds, schedule_id, fire_time) SELECT tenant_id, 'tick', 'default',"
            " 'queued', '{}', 1, '{}', 1, id, $1 FROM schedules WHERE id = $2",
            first,
            sid,
        )
    fired = await round_for(db, sid)
    assert fired.duplicates == 1
    assert len(fired.created) == 3
    times = await fire_times(db, sid)
    assert len(times) == len(set(times)) == 4
    assert all(b - a == S for a, b in itertools.pairwise(times))


async def test_concurrent_rounds_fire_each_time_once(db):
    sids = [(await new_schedule(db, behind=5, misfire_policy="catch_up"))[0] for _ in range(20)]
    await asyncio.gather(*(fire_due(db, 5) for _ in range(8)))
    await asyncio.gather(*(fire_due(db, 5) for _ in range(8)))
    for sid in sids:
        times = await fire_times(db, sid)
        assert len(times) == len(set(times)) >= 6, times
        assert all(b - a == S for a, b in itertools.pairwise(times))


async def test_skip_if_running_waits_for_the_previous_job(db):
    sid, _ = await new_schedule(db, behind=0, overlap_policy="skip_if_running")
    await round_for(db, sid)
    [t0] = await fire_times(db, sid)
    await set_next_fire_at(db, sid, t0 + S)
    await asyncio.sleep(1.1)
    fired = await round_for(db, sid)  # the first job is still queued: nothing fires
    assert fired.plan.overlap_skipped >= 1
    assert await fire_times(db, sid) == [t0]
    async with db.transaction() as conn:
        (job,) = await conn.fetch("SELECT id FROM jobs WHERE schedule_id = $1", sid)
        await jobstore.apply(conn, job["id"], Cancel(), datetime.now(t0.tzinfo))
        await conn.execute(
            "UPDATE schedules SET next_fire_at = now() - interval '0.5 s' WHERE id = $1", sid
        )
    await round_for(db, sid)
    assert len(await fire_times(db, sid)) == 2


async def test_paused_and_ended_schedules_are_not_claimed(db):
    sid, _ = await new_schedule(db, behind=2)
    await set_paused(db, [sid])
    # Ended: its stored time lies past end_at (the relays were down when it ended).
    ended, _ = await new_schedule(db, behind=2, end_at=await db_now(db) - 10 * S)
    first_round = await round_for(db, ended)
    assert first_round.created == ()
    assert (await schedule_row(db, ended))["next_fire_at"] is None  # finished: never due again
    _, fired = await fire_due(db, 1000)
    assert not {sid, ended} & {f.schedule_id for f in fired}
    assert await fire_times(db, sid) == []
    assert await fire_times(db, ended) == []


async def set_policy(db: Database, tenant: str, job_type: str, backoff: dict[str, Any]) -> None:
    async with db.connection() as conn:
        await conn.execute(
            "INSERT INTO job_type_policies (tenant_id, type, backoff, source)"
            " VALUES ($1, $2, $3, 'analyzer')"
            " ON CONFLICT (tenant_id, type) DO UPDATE SET backoff = EXCLUDED.backoff",
            tenant,
            job_type,
            backoff,
        )


async def job_backoff(db: Database, sid: UUID) -> dict[str, Any]:
    async with db.connection() as conn:
        (row,) = await conn.fetch("SELECT backoff FROM jobs WHERE schedule_id = $1", sid)
    backoff: dict[str, Any] = row["backoff"]
    return {k: backoff[k] for k in ("kind", "base_seconds", "max_seconds")}


async def test_a_partial_backoff_takes_the_rest_from_the_policy_then_the_defaults(db):
    """The rule every submission follows: the template's fields, then the tenant's policy
    for the type, then the defaults the relay was configured with."""
    defaults = JobDefaults(
        max_attempts=4, timeout_seconds=30, backoff=BackoffPolicy(BackoffKind.FIXED, 5, 100)
    )
    template = {"type": "tick", "payload": {}, "backoff": {"max_seconds": 60}}
    plain, _ = await new_schedule(db, behind=0, job_template=template)
    tuned, _ = await new_schedule(db, behind=0, job_template=template)
    await set_policy(
        db,
        await tenant_of_schedule(db, tuned),
        "tick",
        {"kind": "exponential", "base_seconds": 2, "max_seconds": 10},
    )
    _, fired = await fire_due(db, 1000, defaults)
    assert {plain, tuned} <= {f.schedule_id for f in fired if f.created}
    assert await job_backoff(db, plain) == {"kind": "fixed", "base_seconds": 5, "max_seconds": 60}
    assert await job_backoff(db, tuned) == {
        "kind": "exponential",
        "base_seconds": 2,
        "max_seconds": 60,
    }


async def test_a_template_that_no_longer_resolves_skips_its_times_and_moves_on(db):
    """A partial backoff the gateway accepted may contradict a policy set later (max below
    the new base): that fire makes no job, but the schedule is not stuck failing every round,
    and fires again once the policy allows it."""
    template = {"type": "tick", "payload": {}, "backoff": {"max_seconds": 3}}
    sid, _ = await new_schedule(db, behind=0, job_template=template)
    tenant = await tenant_of_schedule(db, sid)
    await set_policy(db, tenant, "tick", {"kind": "fixed", "base_seconds": 9, "max_seconds": 9})
    due = (await schedule_row(db, sid))["next_fire_at"]
    fired = await round_for(db, sid)
    assert (fired.created, fired.unresolved) == ((), 1)
    assert await fire_times(db, sid) == []
    assert (await schedule_row(db, sid))["next_fire_at"] > due  # moved on, not stuck
    await set_policy(db, tenant, "tick", {"kind": "fixed", "base_seconds": 1, "max_seconds": 9})
    await set_next_fire_at(db, sid, await db_now(db) - 0.5 * S)
    fired = await round_for(db, sid)
    assert len(fired.created) == 1
    assert await job_backoff(db, sid) == {"kind": "fixed", "base_seconds": 1, "max_seconds": 3}


async def tenant_of_schedule(db: Database, sid: UUID) -> str:
    tenant: str = (await schedule_row(db, sid))["tenant_id"]
    return tenant
