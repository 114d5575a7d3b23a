"""``jobline dev``: the whole stack on one machine, and nothing left behind when it stops.

Order of start: PostgreSQL (embedded unless ``JOBLINE_DATABASE_URL``), the broker (embedded
unless ``JOBLINE_KAFKA_BOOTSTRAP``), migrations, topics, the dev key, then the four services
as child processes in their own sessions, so the terminal's Ctrl-C reaches only this
supervisor, which then stops the children first and the servers last.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from jobline.broker import kafka
from jobline.core import topics
from jobline.core.apikeys import ALL_SCOPES, TENANT_SCOPES, Scope
from jobline.core.errors import DependencyUnavailable, JoblineError
from jobline.pg import db, keystore, migrate, registry
from jobline.pg.db import Database
from jobline.settings import KafkaSettings

DEV_PG_PORT: Final = 54329
DEV_BROKER_PORT: Final = 9092
DEV_DATABASE: Final = "jobline"
DEV_TENANT: Final = "dev"
STATE_FILE: Final = "dev.json"
KEY_FILE: Final = "dev-api-key"
READY_TIMEOUT_SECONDS: Final = 60.0
STOP_GRACE_SECONDS: Final = 15.0
# Queues the example handlers use; topics are created up front so consumers find them.
DEV_QUEUES: Final = ("default", "emails")


# The variable each service reads its port from; `jobline dev` honours it too.
PORT_VARIABLES: Final = {
    "gateway": "JOBLINE_GATEWAY_PORT",
    "outbox-relay": "JOBLINE_RELAY_PORT",
    "worker": "JOBLINE_WORKER_PORT",
    "ai-analyzer": "JOBLINE_ANALYZER_PORT",
}


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    module: str
    default_port: int
    args: tuple[str, ...] = ()

    @property
    def port(self) -> int:
        return int(os.environ.get(PORT_VARIABLES[self.name], self.default_port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SERVICES: Final = (
    ServiceSpec("gateway", "jobline_gateway", 8000),
    ServiceSpec("outbox-relay", "jobline_relay", 8002),
    ServiceSpec(
        "worker",
        "jobline_worker",
        8003,
        ("--app", "jobline_worker.examples:worker", "--queues", ",".join(DEV_QUEUES)),
    ),
    ServiceSpec("ai-analyzer", "jobline_analyzer", 8001),
)

_COLOURS: Final = ("\033[36m", "\033[35m", "\033[33m", "\033[32m")
_RESET: Final = "\033[0m"


class StackError(JoblineError):
    """The dev stack could not start."""


@dataclass
class Endpoints:
    database_url: str
    kafka_bootstrap: str
    topic_prefix: str = "jobline"
    pids: dict[str, int] = field(default_factory=dict)


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def read_state(data_dir: Path) -> Endpoints | None:
    """The running dev stack's endpoints (for ``jobline migrate`` / ``keys``), if any."""
    try:
        raw = json.loads(state_path(data_dir).read_text())
        supervisor = int(raw["supervisor_pid"])
        os.kill(supervisor, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Endpoints(
        raw["database_url"], raw["kafka_bootstrap"], raw.get("topic_prefix", "jobline")
    )


def run(data_dir: Path, topic_prefix: str, partitions: int) -> int:
    """Start everything, stream logs until a signal or a child's death, stop everything."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    with ExitStack() as stack:
        external_db = os.environ.get("JOBLINE_DATABASE_URL")
        database_url = external_db or stack.enter_context(_embedded_postgres(data_dir))
        bootstrap = os.environ.get("JOBLINE_KAFKA_BOOTSTRAP") or stack.enter_context(
            _embedded_broker(data_dir)
        )
        endpoints = Endpoints(database_url, bootstrap, topic_prefix)
        # The operator scope only for a database this process started: pointed at someone
        # else's database, `jobline dev` must not mint keys that manage every tenant.
        key = asyncio.run(_prepare(endpoints, data_dir, partitions, operator=not external_db))
        stack.callback(state_path(data_dir).unlink, missing_ok=True)
        _write_state(data_dir, endpoints)

        children = stack.enter_context(_children(endpoints, data_dir))
        _wait_ready(children, stop)
        if stop.is_set():
            return 0
        _banner(key, data_dir, operator=not external_db)
        while not stop.wait(0.5):
            dead = [name for name, proc in children.items() if proc.poll() is not None]
            if dead:
                _say(f"{', '.join(dead)} exited unexpectedly; stopping the stack")
                return 1
        _say("stopping ...")
    _say("stopped; nothing left running")
    return 0


# --- start-up steps -------------------------------------------------------------------------


@contextmanager
def _embedded_postgres(data_dir: Path) -> Iterator[str]:
    from jobline.dev.embedded import EmbeddedPostgres

    port = int(os.environ.get("JOBLINE_DEV_PG_PORT", DEV_PG_PORT))
    server = EmbeddedPostgres(data_dir / "postgres", port)
    _say(f"starting embedded PostgreSQL on 127.0.0.1:{port} (data in {server.data_dir})")
    server.start()
    try:
        asyncio.run(_ensure_database(server.url))
        yield db.database_url(server.url, DEV_DATABASE)
    finally:
        _say("stopping PostgreSQL")
        server.stop()


async def _ensure_database(server_url: str) -> None:
    import asyncpg

    with suppress(asyncpg.DuplicateDatabaseError):
        await db.create_database(server_url, DEV_DATABASE)


@contextmanager
def _embedded_broker(data_dir: Path) -> Iterator[str]:
    from jobline.dev.embedded import EmbeddedBroker

    port = int(os.environ.get("JOBLINE_DEV_BROKER_PORT", DEV_BROKER_PORT))
    broker = EmbeddedBroker(port, data_dir / "broker.log")
    _say(f"starting embedded broker (Tansu) on 127.0.0.1:{port}")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        _say("stopping the broker")
        broker.stop()


async def _prepare(endpoints: Endpoints, data_dir: Path, partitions: int, *, operator: bool) -> str:
    """Check both servers, migrate, create topics; return the dev API key."""
    await db.check_database(endpoints.database_url)
    settings = KafkaSettings(
        kafka_bootstrap=endpoints.kafka_bootstrap,
        topic_prefix=endpoints.topic_prefix,
        topic_partitions=partitions,
    )
    await kafka.check_broker(settings)
    _say("applying migrations")
    await asyncio.to_thread(migrate.upgrade, endpoints.database_url)
    created = await kafka.ensure_topics(
        settings, topics.core_topics(endpoints.topic_prefix, DEV_QUEUES)
    )
    if created:
        _say(f"created topics: {', '.join(created)}")
    scopes = ALL_SCOPES if operator else TENANT_SCOPES
    await _declare_queues(endpoints.database_url)
    return await _dev_key(endpoints.database_url, data_dir / KEY_FILE, scopes)


async def _declare_queues(database_url: str) -> None:
    """Declare the example handlers' queues (the dev worker does too, when it starts; its
    job types are registered then, before the stack reports ready)."""
    from jobline.settings import DatabaseSettings

    async with (
        Database(DatabaseSettings(database_url=database_url)) as database,
        database.transaction() as conn,
    ):
        declared = await registry.declare_missing_queues(conn, DEV_QUEUES, "jobline dev")
    if declared:
        _say(f"declared queues: {', '.join(declared)}")


async def _dev_key(database_url: str, path: Path, scopes: frozenset[Scope]) -> str:
    """Reuse the saved dev key while it still works and has exactly ``scopes``; otherwise
    mint a new one."""
    from jobline.settings import DatabaseSettings

    saved = await asyncio.to_thread(_read_key, path)
    async with (
        Database(DatabaseSettings(database_url=database_url)) as database,
        database.transaction() as conn,
    ):
        found = saved and await keystore.authenticate(conn, saved, datetime.now(UTC))
        if saved and found and found.scopes == scopes:
            return saved
        _, plaintext = await keystore.create_key(
            conn, tenant_id=DEV_TENANT, name="dev", scopes=scopes
        )
    await asyncio.to_thread(_write_key, path, plaintext)
    return plaintext


def _read_key(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _write_key(path: Path, key: str) -> None:
    path.write_text(key + "\n")
    path.chmod(0o600)


def _write_state(data_dir: Path, endpoints: Endpoints) -> None:
    state = {
        "supervisor_pid": os.getpid(),
        "database_url": endpoints.database_url,
        "kafka_bootstrap": endpoints.kafka_bootstrap,
        "topic_prefix": endpoints.topic_prefix,
        # Where the CLI and the client find the services (jobline.client.config reads it).
        "urls": {spec.name: spec.url for spec in SERVICES},
    }
    state_path(data_dir).write_text(json.dumps(state, indent=2) + "\n")


# --- child processes --------------------------------------------------------------------------


@contextmanager
def _children(endpoints: Endpoints, data_dir: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    from jobline.dev.embedded import BROKER_TUNING

    tuning = {} if os.environ.get("JOBLINE_KAFKA_BOOTSTRAP") else dict(BROKER_TUNING)
    env = {
        **tuning,
        # A webhook receiver on this machine is the usual dev setup: allow loopback and
        # private addresses (deployments refuse them unless told otherwise).
        "JOBLINE_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        **os.environ,
        "JOBLINE_DATABASE_URL": endpoints.database_url,
        "JOBLINE_KAFKA_BOOTSTRAP": endpoints.kafka_bootstrap,
        "JOBLINE_TOPIC_PREFIX": endpoints.topic_prefix,
        "JOBLINE_DATA_DIR": str(data_dir.absolute()),
        "PYTHONUNBUFFERED": "1",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    width = max(len(s.name) for s in SERVICES)
    try:
        for colour, spec in zip(_COLOURS, SERVICES, strict=True):
            proc = subprocess.Popen(
                [sys.executable, "-m", spec.module, *spec.args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs[spec.name] = proc
            assert proc.stdout is not None
            label = f"{colour}{spec.name:>{width}}{_RESET} | "
            threading.Thread(target=_pump, args=(proc.stdout, label), daemon=True).start()
        yield procs
    finally:
        _stop_children(procs)


def _pump(stream: IO[bytes], label: str) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(label + line.decode(errors="replace"))
        sys.stdout.flush()


def _stop_children(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, proc in procs.items():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop within {STOP_GRACE_SECONDS:g}s; killing it")
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_ready(children: dict[str, subprocess.Popen[bytes]], stop: threading.Event) -> None:
    pending = {spec.name: spec for spec in SERVICES}
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while pending and not stop.is_set():
        for name, spec in list(pending.items()):
            if children[name].poll() is not None:
                raise StackError(
                    f"{name} exited during start-up (code {children[name].returncode})"
                )
            if _ready(spec.url + "/readyz"):
                del pending[name]
        if time.monotonic() > deadline:
            raise StackError(f"not ready after {READY_TIMEOUT_SECONDS:g}s: {', '.join(pending)}")
        stop.wait(0.25)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _banner(key: str, data_dir: Path, *, operator: bool) -> None:
    reach = "every scope" if operator else "every tenant scope, no admin: external database"
    lines = ["", "Jobline is running:"]
    lines += [f"  {spec.name:<13} {spec.url}   (/healthz /readyz /metrics)" for spec in SERVICES]
    lines += [
        f"  API docs      {SERVICES[0].url}/docs",
        "",
        f"  dev API key   {key}",
        f"                (tenant '{DEV_TENANT}', {reach}; saved in {data_dir / KEY_FILE})",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _say(message: str) -> None:
    print(f"jobline dev: {message}", flush=True)


__all__ = ["SERVICES", "DependencyUnavailable", "Endpoints", "StackError", "read_state", "run"]
