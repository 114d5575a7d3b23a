"""A rolling upgrade across one migration: the previous release's worker keeps running while
the schema moves to head and a new gateway and relay take over (``make test-upgrade``).

"Previous release" is read from git, not hard-coded: the parent of the commit that added the
newest migration, i.e. the code that last ran on the schema before that migration. Its
``libs/*/src`` and ``services/*/src`` are exported with ``git archive`` into a temporary folder
and put first on the old processes' PYTHONPATH (third-party packages are this checkout's).
So every new migration is checked, from the day it lands, against the worker it must not break
(docs/operations.md, "expand, then contract").

The order is the one the Helm chart and docs/operations.md prescribe:
1. old schema, old gateway, relay and worker: jobs run (the baseline);
2. the new code migrates to head while the old services keep running and jobs keep flowing;
3. new gateway and relay replace the old ones; the OLD worker runs what the new gateway takes;
4. a new worker joins, the old one drains (SIGTERM, exit 0); everything finishes.
Every job must succeed exactly once with its events in order.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
from collections import defaultdict
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from jobline.core import topics
from jobline.pg import db, migrate
from jobline.settings import DatabaseSettings, KafkaSettings
from tests.conftest import broker_tuning, with_database
from tests.stack import Stack, running_stack
from tests.support import (
    GATEWAY_ENV,
    RELAY_ENV,
    WORKER_ENV,
    Api,
    TopicReader,
    event_data,
)

REPO = Path(__file__).resolve().parents[2]
PER_STEP = 300
# The migrations module of whichever layout the old release has (it moved in the package split).
OLD_MIGRATE = (
    "import sys\n"
    "try:\n    from jobline.pg import migrate\n"
    "except ImportError:\n    from jobline import migrate\n"
)
OLD_MINT_KEY = (
    "import asyncio, sys\n"
    "import asyncpg\n"
    "from jobline.core.apikeys import parse_scopes\n"
    "from jobline.pg import keystore\n"
    "async def main():\n"
    "    conn = await asyncpg.connect(sys.argv[1])\n"
    "    try:\n"
    "        _, key = await keystore.create_key(\n"
    "            conn, tenant_id='upgrade', name='upgrade', scopes=parse_scopes(sys.argv[2])\n"
    "        )\n"
    "    finally:\n"
    "        await conn.close()\n"
    "    print(key)\n"
    "asyncio.run(main())\n"
)
WORKER_APP = ("--app", "jobline_worker.examples:worker", "--queues", "emails")


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout


def previous_release() -> tuple[str, str, str]:
    """(commit, head revision, the revision before it): the code just before the newest
    migration was added, and the two revisions the upgrade crosses."""
    scripts = ScriptDirectory.from_config(migrate.config())
    head = scripts.get_revision(migrate.head())
    assert head is not None
    down = head.down_revision
    assert isinstance(down, str), f"head {head.revision} must have one parent, not {down!r}"
    path = Path(head.path).resolve().relative_to(REPO)
    if git("rev-parse", "--is-shallow-repository").strip() == "true":
        raise AssertionError("a shallow clone has no history: fetch it (git fetch --unshallow)")
    added = git("log", "--diff-filter=A", "--format=%H", "--", str(path)).split()
    assert added, f"{path} is not committed yet: commit it, then run the upgrade test"
    return f"{added[-1]}^", head.revision, down


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    commit, head, down = previous_release()
    root = tmp_path_factory.mktemp("old-release")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "libs", "services"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    paths = sorted(str(p) for p in (*root.glob("libs/*/src"), *root.glob("services/*/src")))
    env = {"PYTHONPATH": os.pathsep.join(paths)}
    return {
        "commit": git("rev-parse", "--short", commit).strip(),
        "head": head,
        "down": down,
        "root": root,
        "env": env,
    }


def old_python(
    old: dict[str, Any], code: str, *args: str, env: dict[str, str] | None = None
) -> str:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **old["env"], **(env or {})},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


def test_the_old_processes_really_run_the_old_code(old_code) -> None:
    found = old_python(
        old_code,
        OLD_MIGRATE + "import jobline, jobline_worker, jobline_gateway;"
        "print(jobline.__file__); print(jobline_worker.__file__); print(migrate.head())",
    ).split()
    assert all(path.startswith(str(old_code["root"])) for path in found[:2]), found
    assert found[2] == old_code["down"]  # the old release's newest migration


@pytest.fixture
async def upgrade_db(pg_server_url: str) -> Any:
    name = f"jobline_upgrade_{uuid4().hex[:10]}"
    await db.create_database(pg_server_url, name)
    yield with_database(pg_server_url, name)
    conn = await asyncpg.connect(pg_server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _submit(api: Api, count: int, label: str) -> list[str]:
    jobs = await api.submit_batch(
        [
            {
                "type": "send-email",
                "queue": "emails",
                "payload": {"to": f"{label}{n}@example.com", "subject": label},
            }
            for n in range(count)
        ]
    )
    return [j["id"] for j in jobs]


async def _all_succeeded(pool: asyncpg.Pool, ids: list[str], within: float = 120.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    counts: dict[str, int] = {}
    while asyncio.get_running_loop().time() < deadline:
        rows = await pool.fetch(
            "SELECT state::text AS state, count(*) AS n FROM jobs"
            " WHERE id = ANY($1::uuid[]) GROUP BY state",
            ids,
        )
        counts = {str(r["state"]): int(r["n"]) for r in rows}
        if counts == {"succeeded": len(ids)}:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not all {len(ids)} jobs succeeded: {counts}")


async def _outbox_drained(pool: asyncpg.Pool, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    left = -1
    while asyncio.get_running_loop().time() < deadline:
        left = int(await pool.fetchval("SELECT count(*) FROM outbox"))
        if left == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{left} outbox rows still unpublished")


async def _workers_of(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT worker_id, count(*) AS n FROM job_attempts"
        " WHERE job_id = ANY($1::uuid[]) GROUP BY worker_id",
        ids,
    )
    return {str(r["worker_id"]): int(r["n"]) for r in rows}


async def _effects(pool: asyncpg.Pool, ids: list[str]) -> dict[str, int]:
    """idempotency key (job id) -> deliveries of the example send-email handler."""
    rows = await pool.fetch(
        "SELECT idempotency_key, deliveries FROM jobline_examples.email_effects"
        " WHERE idempotency_key = ANY($1::text[])",
        ids,
    )
    return {str(r["idempotency_key"]): int(r["deliveries"]) for r in rows}


@dataclass
class Rollout:
    """One rolling upgrade in progress: the stack, the old release and the jobs of each step."""

    stack: Stack
    old: dict[str, Any]
    pool: asyncpg.Pool
    key: str
    database_url: str
    ids: dict[str, list[str]] = field(default_factory=dict)

    def start_old(self, kind: str, *args: str, env: dict[str, str]) -> Any:
        return self.stack.start(kind, *args, env={**env, **self.old["env"]})

    @property
    def every(self) -> list[str]:
        return [i for batch in self.ids.values() for i in batch]

    async def old_release_runs(self) -> tuple[Any, Any, Any]:
        """Step 1: the old gateway, relay and worker run jobs on the old schema."""
        gateway = self.start_old("gateway", env=GATEWAY_ENV)
        relay = self.start_old("relay", env=RELAY_ENV)
        worker = self.start_old(
            "worker", *WORKER_APP, env={**WORKER_ENV, "JOBLINE_WORKER_ID": "old-worker"}
        )
        api = Api(gateway.url, self.key)
        try:
            self.ids["baseline"] = await _submit(api, PER_STEP, "baseline")
            await _all_succeeded(self.pool, self.ids["baseline"])
            # Step 2: the new code migrates to head while jobs flow through the old stack.
            flowing = asyncio.create_task(_submit(api, PER_STEP, "during"))
            await asyncio.to_thread(migrate.upgrade, self.database_url)
            self.ids["during_migration"] = await flowing
        finally:
            await api.close()
        assert migrate.current(self.database_url) == self.old["head"]
        return gateway, relay, worker

    async def new_gateway_old_worker(self, old_gateway: Any, old_relay: Any) -> Api:
        """Step 3: a new gateway and relay replace the old ones; the old worker stays.

        The swap waits for the outbox to drain, so that the jobs of this step are the new
        gateway's alone (relays of two releases publishing side by side are not what this test
        is about; tests/e2e/test_multi_replica.py checks per-job order across relays)."""
        await _all_succeeded(self.pool, self.every)
        await _outbox_drained(self.pool)
        gateway = self.stack.start("gateway", env=GATEWAY_ENV)
        self.stack.start("relay", env=RELAY_ENV)
        for service in (old_gateway, old_relay):
            assert await asyncio.to_thread(service.terminate, 30) == 0, service.tail()
        api = Api(gateway.url, self.key)
        self.ids["new_gateway_old_worker"] = await _submit(api, PER_STEP, "mixed")
        await _all_succeeded(self.pool, self.every)
        ran_by = await _workers_of(self.pool, self.ids["new_gateway_old_worker"])
        assert ran_by == {"old-worker": PER_STEP}, ran_by
        return api

    async def new_worker_takes_over(self, api: Api, old_worker: Any) -> None:
        """Step 4: a new worker joins, the old one drains and exits 0."""
        self.stack.start(
            "worker", *WORKER_APP, env={**WORKER_ENV, "JOBLINE_WORKER_ID": "new-worker"}
        )
        assert await asyncio.to_thread(old_worker.terminate, 60) == 0, old_worker.tail()
        self.ids["new_worker"] = await _submit(api, PER_STEP, "new")
        await _all_succeeded(self.pool, self.every)
        assert set(await _workers_of(self.pool, self.ids["new_worker"])) == {"new-worker"}


async def _events_out_of_order(reader: TopicReader, ids: list[str]) -> dict[str, Any]:
    """Jobs whose events are not exactly queued, running, succeeded with sequence 1, 2, 3."""
    wanted = set(ids)
    per_job: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def complete(records: list[Any]) -> bool:
        per_job.clear()
        for data in event_data(records):
            if data["job_id"] in wanted:
                per_job[data["job_id"]].append(data)
        return len(per_job) == len(wanted) and all(len(v) >= 3 for v in per_job.values())

    await reader.until(complete, timeout=60)
    return {
        job_id: [(d["sequence"], d["state"]) for d in data]
        for job_id, data in per_job.items()
        if [d["state"] for d in data] != ["queued", "running", "succeeded"]
        or [d["sequence"] for d in data] != [1, 2, 3]
    }


async def test_an_old_worker_runs_jobs_of_a_new_gateway_across_one_migration(
    old_code, upgrade_db, kafka_bootstrap, topic_prefix, tmp_path
) -> None:
    prefix = f"{topic_prefix}up"
    base = {
        "JOBLINE_DATABASE_URL": upgrade_db,
        "JOBLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "JOBLINE_TOPIC_PREFIX": prefix,
        "JOBLINE_ENV": "test",
        **broker_tuning(),
    }
    # The old release creates its own schema, as it did in production.
    migrate_old = OLD_MIGRATE + "migrate.upgrade(sys.argv[1])"
    old_python(old_code, migrate_old, upgrade_db)
    assert migrate.current(upgrade_db) == old_code["down"]
    # ... and the API key its clients use, minted by its own key store (its CLI asks a
    # gateway since the client landed, and none runs yet).
    key = old_python(
        old_code,
        OLD_MINT_KEY,
        DatabaseSettings(database_url=upgrade_db).plain_url,
        "jobs:write,jobs:read",
    ).strip()
    pool = await asyncpg.create_pool(
        DatabaseSettings(database_url=upgrade_db).plain_url, min_size=1, max_size=4
    )
    kafka_settings = KafkaSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    try:
        with running_stack(base, tmp_path) as stack:
            rollout = Rollout(stack, old_code, pool, key, upgrade_db)
            async with TopicReader(kafka_settings, topics.events_topic(prefix)) as events:
                old_gateway, old_relay, old_worker = await rollout.old_release_runs()
                api = await rollout.new_gateway_old_worker(old_gateway, old_relay)
                try:
                    await rollout.new_worker_takes_over(api, old_worker)
                finally:
                    await api.close()
                assert await _events_out_of_order(events, rollout.every) == {}
        effects = await _effects(pool, rollout.every)
        assert sorted(effects.values()) == [1] * len(rollout.every)  # each exactly once
    finally:
        await pool.close()
    print(
        f"\nupgrade: the worker of {old_code['commit']} (schema {old_code['down']}) ran "
        f"{PER_STEP} jobs of the new gateway on schema {old_code['head']}; "
        f"{len(rollout.every)} jobs in 4 steps, each once, events in order"
    )
