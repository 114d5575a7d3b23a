"""Recurring schedules under relay failures: three relays and a SIGKILL, a 10 s outage."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import timedelta

from jobline.core.schedules import fire_key
from tests.integration.schedules.helpers import (
    S,
    delete_schedules_since,
    fired_jobs,
    gaps,
    new_schedule,
    schedule_row,
    set_paused,
)

RUN_SECONDS = 30
OUTAGE_SECONDS = 10


def _start_relays(stack, n: int):
    relays = [stack.start("relay", wait=False) for _ in range(n)]
    for relay in relays:
        relay.wait_ready()
    return relays


async def test_three_relays_fire_an_every_second_schedule_once_per_second_through_a_sigkill(
    db, stack
):
    """30 s of an every-second schedule with three relays racing for it; one is SIGKILLed at
    15 s. Every planned second in the window has exactly one job: none twice (the row lock,
    then UNIQUE (schedule_id, fire_time)), none missing. The policy is catch_up so that a fire
    the killed relay held (rolled back when its connection died) is still owed if it turns
    late; under skip a late second would be dropped by design, which is not what this tests."""
    sid, created = await new_schedule(db, behind=-2, misfire_policy="catch_up")
    relays = _start_relays(stack, 3)
    try:
        await asyncio.sleep(RUN_SECONDS / 2)
        relays[0].kill()
        await asyncio.sleep(RUN_SECONDS / 2)
        await set_paused(db, [sid])
        for relay in relays[1:]:
            assert relay.terminate() == 0
        jobs = await fired_jobs(db, sid)
        times = [j["fire_time"] for j in jobs]
        first = created.replace(microsecond=0) + 2 * S
        print(f"\n3 relays, {RUN_SECONDS}s: {len(times)} fires, first {times[0]}, last {times[-1]}")
        assert times[0] == first
        assert gaps(times) == []  # one job per second, no hole
        assert len(times) == len(set(times)) >= RUN_SECONDS - 3
        assert [j["idempotency_key"] for j in jobs] == [fire_key(sid, t) for t in times]
        assert (await schedule_row(db, sid))["next_fire_at"] == times[-1] + S
        # Fired on time, not caught up at the end: the lag stays small all along.
        lags = sorted((j["created_at"] - j["fire_time"]).total_seconds() for j in jobs)
        print(f"firing lag p50 {lags[len(lags) // 2] * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms")
        assert lags[len(lags) // 2] < 0.5
    finally:
        await delete_schedules_since(db, created)


def _metric(url: str, name: str, policy: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        body = response.read().decode()
    line = next(
        (
            row
            for row in body.splitlines()
            if row.startswith(f'{name}{{misfire_policy="{policy}"}}')
        ),
        None,
    )
    return float(line.split()[-1]) if line else 0.0


async def test_after_a_10s_outage_each_misfire_policy_does_what_it_says(db, stack):
    """Three every-second schedules (skip, fire_once, catch_up) run, every relay stops for 10 s,
    then one starts again. A job is late when created >= 1 s after its planned time."""
    policies = ("skip", "fire_once", "catch_up")
    made = {p: await new_schedule(db, behind=-1, misfire_policy=p) for p in policies}
    sids = {p: sid for p, (sid, _) in made.items()}
    since = min(now for _, now in made.values())
    try:
        relays = _start_relays(stack, 2)
        await asyncio.sleep(3)
        for relay in relays:
            assert relay.terminate() == 0
        before = {p: len(await fired_jobs(db, sid)) for p, sid in sids.items()}
        assert all(n >= 2 for n in before.values()), before
        await asyncio.sleep(OUTAGE_SECONDS)
        relay = stack.start("relay")
        await asyncio.sleep(3)
        misfires = {p: _metric(relay.url, "jobline_schedule_misfires_total", p) for p in policies}
        await set_paused(db, list(sids.values()))
        assert relay.terminate() == 0

        outcome = {}
        for policy, sid in sids.items():
            jobs = await fired_jobs(db, sid)
            times = [j["fire_time"] for j in jobs]
            late = [j for j in jobs if j["created_at"] - j["fire_time"] >= S]
            holes = gaps(times)
            outcome[policy] = (len(times), len(late), holes)
            print(f"\n{policy}: {len(times)} jobs, {len(late)} late, gaps {holes}")
            assert len(times) == len(set(times))
            assert misfires[policy] >= OUTAGE_SECONDS - 1, misfires
        # skip: the missed seconds are dropped; it goes on from the present, on time.
        _, skip_late, skip_holes = outcome["skip"]
        assert skip_late == 0
        assert len(skip_holes) == 1
        assert skip_holes[0][1] - skip_holes[0][0] >= timedelta(seconds=OUTAGE_SECONDS - 1)
        # fire_once: one make-up job (the latest missed second) stands for all of them.
        _, once_late, once_holes = outcome["fire_once"]
        assert once_late == 1
        assert len(once_holes) == 1
        assert once_holes[0][1] - once_holes[0][0] >= timedelta(seconds=OUTAGE_SECONDS - 2)
        # catch_up: every missed second gets its job (limit 100 > the outage): no hole at all.
        _, catch_up_late, catch_up_holes = outcome["catch_up"]
        assert catch_up_holes == []
        assert catch_up_late >= OUTAGE_SECONDS - 1
    finally:
        await delete_schedules_since(db, since)
