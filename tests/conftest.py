"""Session-wide test harness: one PostgreSQL server and one broker per run, started lazily.

Servers come from, in order: ``JOBLINE_TEST_DATABASE_URL`` / ``JOBLINE_TEST_KAFKA_BOOTSTRAP``
(existing servers), ``JOBLINE_TEST_DOCKER=1`` (testcontainers, the production images), or
the embedded servers (the default). Nothing starts at import or collection time, and unit
tests may not request a server fixture at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import jobline.pg
from jobline.core.errors import DependencyUnavailable
from jobline.dev.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from jobline.pg.db import Database
from jobline.settings import DatabaseSettings, KafkaSettings, plain_url
from tests.stack import Stack, running_stack

TESTS = Path(__file__).parent
FOLDER_MARKERS = ("unit", "integration", "e2e", "faults", "browser")
SERVER_FIXTURES = frozenset(
    {"pg_server_url", "kafka_bootstrap", "database_url", "db_settings", "kafka_settings", "db"}
)
# Durability buys nothing in a throwaway test cluster.
FAST_POSTGRES = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
TEMPLATE_LOCK = 0x6A6F626C  # pg_advisory_lock key: one template build at a time per server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    offenders = []
    for item in items:
        try:
            folder = item.path.relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))
        fixtures = set(getattr(item, "fixturenames", ()))
        if folder == "unit" and fixtures & SERVER_FIXTURES:
            offenders.append(item.nodeid)
    if offenders:
        raise pytest.UsageError("unit tests must not use servers: " + ", ".join(offenders))


def _docker() -> bool:
    return os.environ.get("JOBLINE_TEST_DOCKER") == "1"


T = TypeVar("T", EmbeddedPostgres, EmbeddedBroker)


def _start(make: Callable[[int], T], attempts: int = 3) -> T:
    """Start a server on a free port, retrying if another process grabs the port first."""
    for attempt in range(attempts):
        server = make(free_port())
        try:
            server.start()
        except DependencyUnavailable:
            server.stop()
            if attempt == attempts - 1:
                raise
        else:
            return server
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server's maintenance database URL; tests create their databases on it."""
    if url := os.environ.get("JOBLINE_TEST_DATABASE_URL"):
        yield plain_url(url)
        return
    if _docker():
        # Untested here: these machines have no Docker engine.
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    data_dir = tmp_path_factory.mktemp("postgres")
    server = _start(lambda port: EmbeddedPostgres(data_dir, port, settings=FAST_POSTGRES))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker's bootstrap address."""
    if bootstrap := os.environ.get("JOBLINE_TEST_KAFKA_BOOTSTRAP"):
        yield bootstrap
        return
    if _docker():
        # Untested here: these machines have no Docker engine.
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = _start(lambda port: EmbeddedBroker(port, log))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_group_overrides() -> dict[str, int]:
    """Consumer options for tests that rejoin a group.

    Tansu ignores LeaveGroup, so a consumer replacing a stopped one waits out the old
    member's session timeout (10 s by default). Tansu accepts a short one; real Kafka
    refuses anything under group.min.session.timeout.ms (6 s), so keep its defaults there.
    """
    if os.environ.get("JOBLINE_TEST_KAFKA_BOOTSTRAP") or _docker():
        return {}
    return {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}


@pytest.fixture(scope="session")
def topic_prefix() -> str:
    """A topic prefix unique to this run, so runs sharing a broker never collide."""
    return f"jltest{uuid4().hex[:10]}"


def broker_tuning() -> dict[str, str]:
    """Settings the services need for the embedded broker, as ``jobline dev`` sets them."""
    if os.environ.get("JOBLINE_TEST_KAFKA_BOOTSTRAP") or _docker():
        return {}
    from jobline.dev.embedded import BROKER_TUNING

    return dict(BROKER_TUNING)


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(plain_url(url))
    return urlunsplit(parts._replace(path="/" + name))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _migrations_hash() -> str:
    """Changes whenever a migration (or the code that runs them) changes."""
    package = Path(jobline.pg.__file__).parent
    files = [package / "migrate.py", *sorted((package / "migrations").rglob("*"))]
    assert all(f.exists() for f in files[:1]), "the migrations moved: update this hash"
    digest = hashlib.sha256()
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


async def _build_template(conn: asyncpg.Connection, server_url: str, template: str) -> None:
    from jobline.pg import migrate

    building = f"{template}_build"  # renamed when complete: a crash never leaves half a template
    await conn.execute(f"DROP DATABASE IF EXISTS {_ident(building)} WITH (FORCE)")
    await conn.execute(f"CREATE DATABASE {_ident(building)}")
    # upgrade() is sync and may run its own event loop: give it a thread.
    await asyncio.to_thread(migrate.upgrade, with_database(server_url, building))
    await conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", building
    )
    await conn.execute(f"ALTER DATABASE {_ident(building)} RENAME TO {_ident(template)}")


@pytest.fixture(scope="session")
async def database_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this run, cloned from a per-migrations template."""
    template = f"jobline_template_{_migrations_hash()}"
    name = f"jobline_test_{uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_server_url)
    try:
        # Serialise with other runs on the same server: building and cloning both need the
        # template free of other sessions.
        await conn.execute("SELECT pg_advisory_lock($1)", TEMPLATE_LOCK)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template)
            if not exists:
                await _build_template(conn, pg_server_url, template)
            await conn.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_LOCK)
    finally:
        await conn.close()
    try:
        yield with_database(pg_server_url, name)
    finally:
        conn = await asyncpg.connect(pg_server_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def kafka_settings(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix)


@pytest.fixture(scope="session")
def db_settings(database_url: str) -> DatabaseSettings:
    return DatabaseSettings(database_url=database_url)


# --- shared fixtures for tests that use the schema or run services --------------------


@pytest.fixture(scope="session")
async def engine(db_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    from jobline.pg.engine import create_engine

    engine = create_engine(db_settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def db(db_settings: DatabaseSettings) -> AsyncIterator[Database]:
    """The run's database as the services use it (asyncpg pool, Jobline's codecs)."""
    async with Database(db_settings, application_name="jobline-tests") as database:
        yield database


@pytest.fixture
def make_api_key(db: Database) -> Callable[..., Awaitable[str]]:
    """``await make_api_key(scopes=..., tenant=...)``: a fresh tenant (unless given) and key."""
    from jobline.core.apikeys import ALL_SCOPES, parse_scopes
    from jobline.pg import keystore

    async def make(scopes: str | None = None, tenant: str | None = None) -> str:
        tenant = tenant or f"t-{uuid4().hex[:10]}"
        parsed = parse_scopes(scopes) if scopes else ALL_SCOPES
        async with db.transaction() as conn:
            _, plaintext = await keystore.create_key(
                conn, tenant_id=tenant, name="test", scopes=parsed
            )
        return plaintext

    return make


@pytest.fixture
def service_env(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """The environment a service process of this run needs (as ``jobline dev`` sets it)."""
    return service_environment(database_url, kafka_bootstrap, topic_prefix)


def service_environment(
    database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> dict[str, str]:
    """:func:`service_env`'s value, for fixtures of a wider scope (tests/browser)."""
    return {
        "JOBLINE_DATABASE_URL": database_url,
        "JOBLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "JOBLINE_TOPIC_PREFIX": topic_prefix,
        "JOBLINE_ENV": "test",
        "JOBLINE_LOG_LEVEL": "INFO",
        # Every test client comes from 127.0.0.1 and load tests submit fast: the per-address
        # limit and the tenant rate are tested where a test sets them (tests/e2e/test_quotas.py).
        "JOBLINE_GATEWAY_ADDRESS_RATE_PER_SECOND": "1000000",
        "JOBLINE_GATEWAY_ADDRESS_BURST": "10000000",
        "JOBLINE_QUOTA_SUBMISSIONS_PER_SECOND": "1000000",
        "JOBLINE_QUOTA_SUBMISSION_BURST": "10000000",
        # Tests submit made-up job types and queues (and race the worker's registration);
        # the registry's own tests run the gateway without this.
        "JOBLINE_GATEWAY_ACCEPT_UNDECLARED": "true",
        # The session's database keeps every test's jobs, many left queued on purpose; a
        # relay healing them would flood later tests' workers. The healing tests set it.
        "JOBLINE_RELAY_HEAL_AFTER_SECONDS": "86400",
        **broker_tuning(),
    }


@pytest.fixture
def stack(service_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """Start services as processes with ``stack.start("gateway")``; all stopped afterwards."""
    with running_stack(service_env, tmp_path) as running:
        yield running
