"""The `jobline` CLI end to end: gateway, relay and worker as processes, the CLI as a
subprocess, real PostgreSQL and broker. Checks output, --json and the exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobline_worker import JobContext, Worker
from tests.support import GATEWAY_ENV, RELAY_ENV, WORKER_ENV

JOBLINE = str(Path(sys.executable).parent / "jobline")

# The worker app of these tests (loaded by the worker process from this module).
worker = Worker()


@worker.job("steps", timeout=60, max_attempts=1)
async def steps(ctx: JobContext, payload: dict[str, Any]) -> dict[str, int]:
    """Reports progress in four steps."""
    for step in range(1, 5):
        await asyncio.sleep(float(payload.get("pause", 0.4)))
        await ctx.progress(step / 4, f"step {step}")
    return {"steps": 4}


@worker.job("fails", max_attempts=1)
async def fails(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Always fails with ValueError."""
    raise ValueError("no good")


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBLINE, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
async def env(stack, make_api_key) -> dict[str, str]:
    gateway = stack.start("gateway", env=GATEWAY_ENV)
    stack.start("relay", env=RELAY_ENV)
    stack.start(
        "worker",
        "--app",
        "tests.e2e.test_cli:worker",
        "--queues",
        "default",
        env={**WORKER_ENV, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    return {"JOBLINE_GATEWAY_URL": gateway.url, "JOBLINE_API_KEY": await make_api_key()}


async def test_submit_watch_get_list_attempts_with_json_and_exit_codes(env, service_env):
    run = await asyncio.to_thread(
        cli, env, "jobs", "submit", "steps", "--payload", '{"pause": 0.4}', "--wait"
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any("progress" in line and "step" in line for line in lines), lines
    assert "-> succeeded" in lines[-1], lines
    assert '"steps": 4' in lines[-1]

    submitted = await asyncio.to_thread(cli, env, "jobs", "submit", "steps", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    watched = await asyncio.to_thread(cli, env, "jobs", "watch", job_id, "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[0]["kind"] == "snapshot"
    assert events[-1]["status"] == "succeeded"
    assert any(e["kind"] == "progress" for e in events), events

    got = await asyncio.to_thread(cli, env, "jobs", "get", job_id, "--json")
    assert json.loads(got.stdout)["result"] == {"steps": 4}
    human = await asyncio.to_thread(cli, env, "jobs", "get", job_id)
    assert "succeeded" in human.stdout
    assert "progress  100% step 4" in human.stdout

    listed = await asyncio.to_thread(
        cli, env, "jobs", "list", "--type", "steps", "--status", "succeeded", "--json"
    )
    assert {j["id"] for j in json.loads(listed.stdout)} >= {job_id}
    table = await asyncio.to_thread(cli, env, "jobs", "list", "--limit", "1")
    assert len(table.stdout.splitlines()) == 1

    attempts = await asyncio.to_thread(cli, env, "jobs", "attempts", job_id, "--json")
    assert [a["outcome"] for a in json.loads(attempts.stdout)] == ["succeeded"]

    # A job that ends dead: watch exits 5; the DLQ shows it; redrive sends it back.
    failed = await asyncio.to_thread(cli, env, "jobs", "submit", "fails", "--wait")
    assert failed.returncode == 5, failed.stdout + failed.stderr
    assert "ValueError: no good" in failed.stdout
    dead = await asyncio.to_thread(
        cli, env, "dlq", "list", "--type", "fails", "--error-class", "ValueError", "--json"
    )
    [dead_job] = json.loads(dead.stdout)
    dry = await asyncio.to_thread(cli, env, "dlq", "redrive", "--type", "fails", "--dry-run")
    assert dry.stdout.split() == [dead_job["id"]]
    redriven = await asyncio.to_thread(cli, env, "dlq", "redrive", "--type", "fails", "--json")
    assert [j["id"] for j in json.loads(redriven.stdout)["redriven"]] == [dead_job["id"]]
    not_dead = await asyncio.to_thread(cli, env, "jobs", "redrive", job_id)
    assert not_dead.returncode == 1  # a succeeded job: the gateway's 409, in one line
    assert "409" in not_dead.stderr

    # Cancel a delayed job; --timeout on a job that will not finish in time exits 6.
    later = await asyncio.to_thread(cli, env, "jobs", "submit", "steps", "--delay", "3600")
    cancelled = await asyncio.to_thread(cli, env, "jobs", "cancel", later.stdout.strip())
    assert cancelled.stdout.startswith("cancelled ")
    slow = await asyncio.to_thread(cli, env, "jobs", "submit", "steps", "--delay", "3600")
    timed_out = await asyncio.to_thread(
        cli, env, "jobs", "watch", slow.stdout.strip(), "--timeout", "1"
    )
    assert timed_out.returncode == 6, timed_out.stderr


async def test_counts_unreachable_gateway_and_missing_key(env):
    for args in (("queues",), ("stats",), ("dlq", "groups")):
        run = await asyncio.to_thread(cli, env, *args, "--json")
        assert run.returncode == 0, (args, run.stderr)
        assert isinstance(json.loads(run.stdout), dict | list)
    down = {**env, "JOBLINE_GATEWAY_URL": "http://127.0.0.1:9"}
    run = await asyncio.to_thread(cli, down, "jobs", "list")
    assert run.returncode == 4
    assert "unreachable" in run.stderr
    no_key = {"JOBLINE_GATEWAY_URL": env["JOBLINE_GATEWAY_URL"], "JOBLINE_DATA_DIR": "/nonexistent"}
    run = await asyncio.to_thread(cli, no_key, "jobs", "list")
    assert run.returncode == 2
    assert "JOBLINE_API_KEY" in run.stderr
    bad = await asyncio.to_thread(cli, env, "jobs", "submit", "x", "--payload", "[1]")
    assert bad.returncode == 2


async def test_keys_and_schedule_updates_through_the_api(env):
    created = await asyncio.to_thread(
        cli, env, "keys", "create", "--tenant", "cli-e2e", "--scopes", "jobs:read", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    listed = await asyncio.to_thread(cli, env, "keys", "list", "--tenant", "cli-e2e")
    assert key["id"] in listed.stdout
    assert "active" in listed.stdout
    reader = {**env, "JOBLINE_API_KEY": key["key"]}
    assert (await asyncio.to_thread(cli, reader, "jobs", "list")).returncode == 0
    revoked = await asyncio.to_thread(cli, env, "keys", "revoke", key["id"])
    assert revoked.stdout.strip() == f"revoked {key['id']}"
    refused = await asyncio.to_thread(cli, reader, "jobs", "list")
    assert refused.returncode == 1
    assert "401" in refused.stderr

    made = await asyncio.to_thread(
        cli, env, "schedules", "create", "cli-e2e", "--type", "steps", "--every", "3600"
    )
    assert made.returncode == 0, made.stderr
    updated = await asyncio.to_thread(
        cli,
        env,
        *("schedules", "update", "cli-e2e", "--cron", "0 3 * * *", "--timezone"),
        *("Europe/Berlin", "--payload", '{"pause": 0}', "--json"),
    )
    assert updated.returncode == 0, updated.stderr
    body = json.loads(updated.stdout)
    assert (body["cron"], body["interval_seconds"], body["timezone"]) == (
        "0 3 * * *",
        None,
        "Europe/Berlin",
    )
    assert body["job"]["payload"] == {"pause": 0}
    assert body["job"]["type"] == "steps"
    shown = await asyncio.to_thread(cli, env, "schedules", "get", "cli-e2e")
    assert "cron '0 3 * * *' Europe/Berlin" in shown.stdout
    assert (await asyncio.to_thread(cli, env, "schedules", "delete", "cli-e2e")).returncode == 0


async def test_events_tail_filters_by_job_type_and_tenant(env, service_env):
    submitted = await asyncio.to_thread(cli, env, "jobs", "submit", "steps", "--wait", "--json")
    job_id = json.loads(submitted.stdout.splitlines()[0])["job_id"]
    tail_env = {
        **env,
        "JOBLINE_KAFKA_BOOTSTRAP": service_env["JOBLINE_KAFKA_BOOTSTRAP"],
        "JOBLINE_TOPIC_PREFIX": service_env["JOBLINE_TOPIC_PREFIX"],
    }
    run = await asyncio.to_thread(
        cli,
        tail_env,
        *("events", "tail", "--job", job_id, "--from-beginning", "--count", "3", "--json"),
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert [e["type"] for e in events] == [
        "jobline.job.queued",
        "jobline.job.started",
        "jobline.job.succeeded",
    ]
    assert {e["data"]["job_id"] for e in events} == {job_id}
    tenant = events[0]["data"]["tenant"]
    only_done = await asyncio.to_thread(
        cli,
        tail_env,
        *("events", "tail", "--tenant", tenant, "--type", "succeeded", "--from-beginning"),
        *("--count", "1"),
    )
    assert only_done.returncode == 0, only_done.stderr
    assert "succeeded" in only_done.stdout
    assert job_id in only_done.stdout or tenant in only_done.stdout


async def test_own_keys_are_created_listed_and_revoked_within_the_tenant(env, make_api_key):
    manager = await make_api_key(scopes="keys:manage,jobs:read")
    own = {**env, "JOBLINE_API_KEY": manager}
    created = await asyncio.to_thread(
        cli, own, "keys", "create", "--own", "--scopes", "jobs:read", "--json"
    )
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["id"]
    listed = await asyncio.to_thread(cli, own, "keys", "list", "--own", "--json")
    assert key_id in {k["id"] for k in json.loads(listed.stdout)}
    stronger = await asyncio.to_thread(
        cli, own, "keys", "create", "--own", "--scopes", "jobs:write"
    )
    assert stronger.returncode == 1
    assert "holds itself" in stronger.stderr
    revoked = await asyncio.to_thread(cli, own, "keys", "revoke", "--own", key_id)
    assert revoked.returncode == 0, revoked.stderr
