"""Schedules end to end: the gateway and relay as processes; the `jobline schedules` CLI."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from jobline.client import Client
from tests.integration.schedules.helpers import S, delete_schedules_since, fire_times, gaps


def _cli(gateway_url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBLINE_GATEWAY_URL": gateway_url, "JOBLINE_API_KEY": key}
    return subprocess.run(
        [str(Path(sys.executable).parent / "jobline"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _until(predicate, timeout: float) -> None:  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_pause_stops_firing_and_resume_continues_from_now(db, stack, make_api_key):
    """Every-second schedules through the gateway's API, fired by a relay process: pause
    stops them; resume fires the missed seconds as the policy says (skip: the latest one,
    catch_up with limit 2: the latest two), then every second again."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    key = await make_api_key(scopes="schedules:write,jobs:read")
    gateway = stack.start("gateway")
    # A resumed schedule is first seen within the scheduler's poll interval; keep that well
    # under the 1 s grace so the owed times are still what resume computed when they fire.
    stack.start("relay", env={"JOBLINE_SCHEDULER_POLL_INTERVAL_SECONDS": "0.2"})
    with Client(gateway.url, key) as client:
        job = {"type": "tick", "payload": {}}
        skip = client.create_schedule({"name": "skip", "interval_seconds": 1, "job": job})
        catch = client.create_schedule(
            {
                "name": "catch",
                "interval_seconds": 1,
                "job": job,
                "misfire_policy": "catch_up",
                "catch_up_limit": 2,
            }
        )
        try:
            ids = {"skip": skip["id"], "catch": catch["id"]}

            async def fired(name: str, n: int) -> bool:
                return len(await fire_times(db, UUID(ids[name]))) >= n

            await _until(lambda: fired("skip", 3), 10)
            await _until(lambda: fired("catch", 3), 10)
            # The gateway's own clock stamps the pause and the resume (updated_at).
            paused_at = {}
            for name, sid in ids.items():
                paused = client.pause_schedule(sid)
                assert paused["paused"] is True
                paused_at[name] = datetime.fromisoformat(paused["updated_at"])
            counts = {n: len(await fire_times(db, UUID(sid))) for n, sid in ids.items()}
            await asyncio.sleep(4)  # what must NOT happen needs a wait: nothing fires
            assert {n: len(await fire_times(db, UUID(sid))) for n, sid in ids.items()} == counts
            resumed_at = {}
            for name, sid in ids.items():
                resumed = client.resume_schedule(sid)
                assert resumed["paused"] is False
                resumed_at[name] = datetime.fromisoformat(resumed["updated_at"])
            await _until(lambda: fired("skip", counts["skip"] + 3), 10)
            await _until(lambda: fired("catch", counts["catch"] + 4), 10)
            for sid in ids.values():
                client.pause_schedule(sid)

            for name, extra_owed in (("skip", 1), ("catch", 2)):
                times = await fire_times(db, UUID(ids[name]))
                after = [t for t in times if t > paused_at[name]]
                during = [t for t in after if t <= resumed_at[name]]
                # Of the ~4 seconds missed while paused, only the owed ones ran...
                assert len(during) == extra_owed, (name, during)
                assert resumed_at[name] - during[0] < timedelta(seconds=extra_owed)
                # ...and from them on, every second without a hole.
                assert gaps(after) == [], (name, after)
                holes = gaps(times)
                assert len(holes) == 1
                assert holes[0][1] - holes[0][0] >= 3 * S
            jobs = client.schedule_jobs(ids["skip"], limit=2)
            assert len(jobs["jobs"]) == 2
            assert jobs["next_cursor"]
        finally:
            await delete_schedules_since(db, since)


async def test_cli_creates_lists_previews_and_pauses_schedules(db, stack, make_api_key):
    since = datetime.now(UTC) - timedelta(seconds=1)
    key = await make_api_key(scopes="schedules:write,jobs:read")
    gateway = stack.start("gateway")
    try:
        created = _cli(
            gateway.url,
            key,
            *("schedules", "create", "berlin-nightly", "--type", "report.build"),
            *("--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "--payload", '{"a": 1}'),
        )
        assert created.returncode == 0, created.stderr
        sid = created.stdout.strip()
        assert "next fire" in created.stderr

        listed = _cli(gateway.url, key, "schedules", "list")
        assert listed.returncode == 0, listed.stderr
        assert sid in listed.stdout
        assert "berlin-nightly" in listed.stdout
        assert "active" in listed.stdout

        preview = _cli(
            gateway.url,
            key,
            *("schedules", "next", "berlin-nightly", "--count", "2"),
            *("--after", "2024-03-30T12:00:00Z"),
        )
        assert preview.returncode == 0, preview.stderr
        assert preview.stdout.splitlines() == [
            "2024-03-31T03:00:00+02:00  (Europe/Berlin)  2024-03-31T01:00:00Z",
            "2024-04-01T02:30:00+02:00  (Europe/Berlin)  2024-04-01T00:30:00Z",
        ]

        paused = _cli(gateway.url, key, "schedules", "pause", sid)
        assert paused.returncode == 0, paused.stderr
        assert "paused berlin-nightly" in paused.stdout
        assert "paused" in _cli(gateway.url, key, "schedules", "list").stdout

        resumed = _cli(gateway.url, key, "schedules", "resume", "berlin-nightly")
        assert resumed.returncode == 0, resumed.stderr

        bad = _cli(
            gateway.url,
            key,
            *("schedules", "create", "broken", "--type", "x", "--cron", "61 * * * *"),
        )
        assert bad.returncode == 1
        assert "bad minute field '61'" in bad.stderr

        deleted = _cli(gateway.url, key, "schedules", "delete", "berlin-nightly")
        assert deleted.returncode == 0, deleted.stderr
        assert sid not in _cli(gateway.url, key, "schedules", "list").stdout
        missing = _cli(gateway.url, key, "schedules", "pause", "berlin-nightly")
        assert missing.returncode == 1
        assert "no schedule named 'berlin-nightly'" in missing.stderr
    finally:
        await delete_schedules_since(db, since)
