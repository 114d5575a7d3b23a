"""The relay's scheduler in-process against real PostgreSQL: misfire policies, overlap,
the unique safety net, concurrent rounds, outbox rows."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from uuid import UUID

from sqlalchemy import text

from jobline.core.schedules import fire_key
from jobline.core.states import Cancel
from jobline.pg import db, jobstore
from jobline_relay.scheduler import fire_due
from tests.integration.schedules.helpers import S, fire_times, new_schedule, schedule_row


async def round_for(engine, sid: UUID):
    _, fired = await fire_due(engine, 1000)
    return next(f for f in fired if f.schedule_id == sid)


async def test_skip_fires_only_the_latest_time(engine):
    sid, _ = await new_schedule(engine, behind=10, misfire_policy="skip")
    fired = await round_for(engine, sid)
    times = await fire_times(engine, sid)
    assert len(times) == 1
    assert fired.plan.missed == 10
    assert fired.plan.dropped == 10
    row = await schedule_row(engine, sid)
    assert row.next_fire_at == times[0] + S
    assert row.last_fired_at == times[0]


async def test_fire_once_makes_up_once(engine):
    sid, _ = await new_schedule(engine, behind=10, misfire_policy="fire_once")
    fired = await round_for(engine, sid)
    times = await fire_times(engine, sid)
    # One make-up run for the 10 missed (keyed by the latest of them), plus the on-time one.
    assert len(times) == 2
    assert times[1] - times[0] == S
    assert fired.plan.missed == 10
    assert fired.plan.dropped == 9


async def test_catch_up_fires_every_missed_time_up_to_the_limit(engine):
    sid, _ = await new_schedule(engine, behind=10, misfire_policy="catch_up")
    await round_for(engine, sid)
    times = await fire_times(engine, sid)
    assert len(times) == 11
    assert all(b - a == S for a, b in itertools.pairwise(times))
    limited, _ = await new_schedule(engine, behind=10, misfire_policy="catch_up", catch_up_limit=4)
    await round_for(engine, limited)
    times = await fire_times(engine, limited)
    assert len(times) == 5
    assert times[-1] - times[0] == 4 * S


async def test_each_job_has_its_key_template_and_outbox_row(engine):
    sid, _ = await new_schedule(
        engine,
        behind=0,
        job_template={
            "type": "tick",
            "payload": {"a": 1},
            "queue": "ticks",
            "max_attempts": 2,
            "timeout_seconds": 9,
        },
    )
    await round_for(engine, sid)
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM jobs WHERE schedule_id = :s"), {"s": sid})
        ).one()
        outbox = (
            await conn.execute(text("SELECT topic FROM outbox WHERE job_id = :j"), {"j": row.id})
        ).all()
    assert row.idempotency_key == fire_key(sid, row.fire_time)
    assert (row.type, row.queue, row.payload, row.max_attempts, row.timeout_seconds) == (
        "tick",
        "ticks",
        {"a": 1},
        2,
        9,
    )
    assert row.state == "queued"
    assert row.run_at == row.fire_time
    assert sorted(r.topic for r in outbox) == ["events", "jobs.ticks"]


async def test_an_existing_job_for_a_fire_time_is_absorbed(engine):
    """The safety net: a fire time that already has its job (UNIQUE (schedule_id, fire_time))
    is skipped in its own savepoint; the others fire and the schedule moves on."""
    sid, _ = await new_schedule(engine, behind=3, misfire_policy="catch_up")
    first = (await schedule_row(engine, sid)).next_fire_at
    async with db.transaction(engine) as conn:  # a job for the oldest planned time exists
        await conn.execute(
            text(
                "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts, backoff,"
                " timeout_seconds, schedule_id, fire_time) SELECT tenant_id, 'tick', 'default',"
                " 'queued', '{}', 1, '{}', 1, id, :t FROM schedules WHERE id = :s"
            ),
            {"t": first, "s": sid},
        )
    fired = await round_for(engine, sid)
    assert fired.duplicates == 1
    assert len(fired.created) == 3
    times = await fire_times(engine, sid)
    assert len(times) == len(set(times)) == 4
    assert all(b - a == S for a, b in itertools.pairwise(times))


async def test_concurrent_rounds_fire_each_time_once(engine):
    sids = [(await new_schedule(engine, behind=5, misfire_policy="catch_up"))[0] for _ in range(20)]
    await asyncio.gather(*(fire_due(engine, 5) for _ in range(8)))
    await asyncio.gather(*(fire_due(engine, 5) for _ in range(8)))
    for sid in sids:
        times = await fire_times(engine, sid)
        assert len(times) == len(set(times)) >= 6, times
        assert all(b - a == S for a, b in itertools.pairwise(times))


async def test_skip_if_running_waits_for_the_previous_job(engine):
    sid, _ = await new_schedule(engine, behind=0, overlap_policy="skip_if_running")
    await round_for(engine, sid)
    [t0] = await fire_times(engine, sid)
    async with db.transaction(engine) as conn:
        await conn.execute(
            text("UPDATE schedules SET next_fire_at = :t WHERE id = :s"), {"t": t0 + S, "s": sid}
        )
    await asyncio.sleep(1.1)
    fired = await round_for(engine, sid)  # the first job is still queued: nothing fires
    assert fired.plan.overlap_skipped >= 1
    assert await fire_times(engine, sid) == [t0]
    async with db.transaction(engine) as conn:
        job_id = (
            await conn.execute(text("SELECT id FROM jobs WHERE schedule_id = :s"), {"s": sid})
        ).scalar_one()
        await jobstore.apply(conn, job_id, Cancel(), datetime.now(t0.tzinfo))
        await conn.execute(
            text("UPDATE schedules SET next_fire_at = now() - interval '0.5 s' WHERE id = :s"),
            {"s": sid},
        )
    await round_for(engine, sid)
    assert len(await fire_times(engine, sid)) == 2


async def test_paused_and_ended_schedules_are_not_claimed(engine):
    sid, _ = await new_schedule(engine, behind=2)
    async with db.transaction(engine) as conn:
        await conn.execute(text("UPDATE schedules SET paused = true WHERE id = :s"), {"s": sid})
    _, fired = await fire_due(engine, 1000)
    assert sid not in {f.schedule_id for f in fired}
    assert await fire_times(engine, sid) == []
