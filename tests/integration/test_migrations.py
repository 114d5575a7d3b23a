"""The migrations build exactly the schema ``jobline.tables`` describes, and undo it.

Every test gets its own empty database on ``pg_server_url`` and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from jobline.core.errors import DependencyUnavailable
from jobline.pg import db, migrate, tables
from jobline.pg.listen import OUTBOX_CHANNEL
from jobline.settings import asyncpg_url

JOBLINE_TABLES = {table.name for table in tables.ALL_TABLES}
EXPECTED_TABLES = {
    "tenants",
    "api_keys",
    "jobs",
    "idempotency_keys",
    "job_attempts",
    "outbox",
    "outbox_set_aside",
    "outbox_parked",
    "schedules",
    "job_type_policies",
    "job_type_limits",
    "queues",
    "job_types",
    "analyzer_seen_events",
    "analyzer_rollups",
    "analyzer_error_rollups",
    "analyzer_jobs",
    "analyzer_attempts",
    "analyzer_detector_state",
    "analyzer_findings",
    "analyzer_recommendations",
    # 0006: quotas, the shared submission bucket, the audit log
    "tenant_quotas",
    "tenant_rate_buckets",
    "audit_log",
    # 0010: webhooks
    "webhook_endpoints",
    "webhook_deliveries",
    # 0013: workflows
    "workflows",
    "job_dependencies",
    # 0014: limits
    "limit_gates",
    "rate_starts",
}
HEAD = "0015"


@pytest.fixture
async def empty_db(pg_server_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"jobline_migtest_{uuid4().hex[:12]}"
    await db.create_database(pg_server_url, name)
    try:
        yield db.database_url(pg_server_url, name)
    finally:
        await db.drop_database(pg_server_url, name)


@pytest.fixture
async def migrated_db(empty_db: str) -> str:
    await asyncio.to_thread(migrate.upgrade, empty_db)
    return empty_db


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _public_tables(url: str) -> set[str]:
    rows = await _fetch(
        url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    return {row["table_name"] for row in rows}


async def _public_functions(url: str) -> set[str]:
    rows = await _fetch(
        url,
        "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'public'",
    )
    return {row["proname"] for row in rows}


async def _schema_diffs(url: str) -> list[Any]:
    def compare(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "target_metadata": tables.metadata,
            },
        )
        return list(compare_metadata(context, tables.metadata))

    engine = create_async_engine(asyncpg_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(compare)
    finally:
        await engine.dispose()


async def _catalog(url: str) -> dict[str, Any]:
    """What PostgreSQL reports of the public schema, in its own normalised spelling."""
    columns = await _fetch(
        url,
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type,"
        " a.attnotnull, a.attidentity, pg_get_expr(d.adbin, d.adrelid) AS default"
        " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0"
        " AND NOT a.attisdropped AND c.relname <> 'alembic_version'",
    )
    constraints = await _fetch(
        url,
        "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) AS def"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relname <> 'alembic_version'",
    )
    indexes = await _fetch(
        url,
        "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'",
    )
    return {
        "columns": {
            (r["relname"], r["attname"]): (
                r["type"],
                r["attnotnull"],
                r["attidentity"],
                r["default"],
            )
            for r in columns
        },
        "constraints": {(r["relname"], r["conname"]): r["def"] for r in constraints},
        "indexes": {r["indexname"]: r["indexdef"] for r in indexes},
    }


def _differences(left: dict[Any, Any], right: dict[Any, Any]) -> dict[Any, Any]:
    return {
        key: (left.get(key), right.get(key))
        for key in left.keys() | right.keys()
        if left.get(key) != right.get(key)
    }


async def test_upgrade_creates_every_table(migrated_db: str) -> None:
    assert JOBLINE_TABLES == EXPECTED_TABLES
    assert await _public_tables(migrated_db) == EXPECTED_TABLES | {"alembic_version"}
    assert await asyncio.to_thread(migrate.current, migrated_db) == migrate.head() == HEAD


async def test_schema_matches_tables_py(migrated_db: str) -> None:
    # alembic's comparison: types, nullability, server defaults, keys, uniques, indexes.
    assert await _schema_diffs(migrated_db) == []


async def test_catalog_matches_a_database_built_from_tables_py(
    pg_server_url: str, migrated_db: str
) -> None:
    # alembic compares neither CHECK constraints nor partial indexes' WHERE clauses: build
    # the schema straight from tables.py and compare what PostgreSQL reports for both.
    name = f"jobline_migtest_{uuid4().hex[:12]}"
    await db.create_database(pg_server_url, name)
    try:
        reference = db.database_url(pg_server_url, name)
        engine = create_async_engine(asyncpg_url(reference), poolclass=pool.NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(tables.metadata.create_all)
        finally:
            await engine.dispose()
        expected, actual = await _catalog(reference), await _catalog(migrated_db)
    finally:
        await db.drop_database(pg_server_url, name)
    for part in ("columns", "constraints", "indexes"):
        assert _differences(expected[part], actual[part]) == {}, part
    # Guards against comparing two empty catalogs: at least a primary key per table.
    assert len(actual["indexes"]) >= len(JOBLINE_TABLES)


async def test_outbox_trigger_is_statement_level(migrated_db: str) -> None:
    rows = await _fetch(
        migrated_db,
        "SELECT t.tgname, t.tgtype, p.proname FROM pg_trigger t"
        " JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE t.tgrelid = 'outbox'::regclass AND NOT t.tgisinternal",
    )
    assert [(r["tgname"], r["proname"]) for r in rows] == [
        ("outbox_notify", "jobline_outbox_notify")
    ]
    tgtype = rows[0]["tgtype"]
    assert tgtype & 1 == 0, "FOR EACH ROW: a batch insert would notify per row"
    assert tgtype & 4, "not an INSERT trigger"


@pytest.mark.parametrize("statements", ["one 100-row INSERT", "100 one-row INSERTs"])
async def test_outbox_insert_notifies_once_per_transaction(
    migrated_db: str, statements: str
) -> None:
    received: list[tuple[str, str]] = []
    done = asyncio.Event()

    def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
        if channel == "test_done":
            done.set()
        else:
            received.append((channel, payload))

    listener = await asyncpg.connect(migrated_db)
    writer = await asyncpg.connect(migrated_db)
    try:
        await listener.add_listener(OUTBOX_CHANNEL, on_notify)
        await listener.add_listener("test_done", on_notify)
        async with writer.transaction():
            if statements == "one 100-row INSERT":
                await writer.execute(
                    "INSERT INTO outbox (topics, payloads) SELECT ARRAY['events'],"
                    " ARRAY[convert_to(i::text, 'UTF8')] FROM generate_series(1, 100) i"
                )
            else:
                await writer.executemany(
                    "INSERT INTO outbox (topics, payloads) VALUES ($1, $2)",
                    [(["events"], [str(i).encode()]) for i in range(100)],
                )
        # Notifications reach a listener in commit order: once this one arrives, every
        # notification of the insert transaction has too.
        await writer.execute("NOTIFY test_done")
        await asyncio.wait_for(done.wait(), timeout=10)
        assert received == [(OUTBOX_CHANNEL, "")]
        assert await writer.fetchval("SELECT count(*) FROM outbox") == 100
    finally:
        await writer.close()
        await listener.close()


async def _add_tenant(conn: asyncpg.Connection, tenant: str = "acme") -> None:
    await conn.execute("INSERT INTO tenants (id, name) VALUES ($1, $2)", tenant, tenant.title())


async def test_idempotency_key_admits_exactly_one_submission(migrated_db: str) -> None:
    setup = await asyncpg.connect(migrated_db)
    try:
        await _add_tenant(setup)
    finally:
        await setup.close()

    async def submit(n: int) -> str | None:
        conn = await asyncpg.connect(migrated_db)
        try:
            result: str | None = await conn.fetchval(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, expires_at)"
                " VALUES ('acme', 'k1', $1, ARRAY[gen_random_uuid()], now() + interval '1 day')"
                " ON CONFLICT (tenant_id, key) DO NOTHING RETURNING request_hash",
                f"hash-{n}",
            )
            return result
        finally:
            await conn.close()

    results = await asyncio.gather(*(submit(n) for n in range(10)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1

    conn = await asyncpg.connect(migrated_db)
    try:
        assert await conn.fetchval("SELECT request_hash FROM idempotency_keys") == winners[0]
        with pytest.raises(asyncpg.UniqueViolationError, match="pk_idempotency_keys"):
            await conn.execute(
                "INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, expires_at)"
                " VALUES ('acme', 'k1', 'other', '{}', now())"
            )
    finally:
        await conn.close()


async def test_one_job_per_schedule_fire_time(migrated_db: str) -> None:
    insert_job = (
        "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts, backoff,"
        " timeout_seconds, schedule_id, fire_time)"
        " VALUES ('acme', 'report', 'default', 'queued', '{}', 3,"
        ' \'{"kind": "exponential", "base_seconds": 1, "max_seconds": 60}\', 30, $1, $2)'
    )
    fire_time = datetime(2030, 1, 1, 12, tzinfo=UTC)
    conn = await asyncpg.connect(migrated_db)
    try:
        await _add_tenant(conn)
        schedule_id = await conn.fetchval(
            "INSERT INTO schedules (tenant_id, name, interval_seconds, job_template)"
            " VALUES ('acme', 'hourly', 3600, '{}') RETURNING id"
        )
        await conn.execute(insert_job, schedule_id, fire_time)
        with pytest.raises(asyncpg.UniqueViolationError, match="uq_jobs_schedule_id_fire_time"):
            await conn.execute(insert_job, schedule_id, fire_time)
        # The relay's idempotent fire: a second attempt at the same tick is a no-op.
        fired = await conn.fetch(
            insert_job + " ON CONFLICT (schedule_id, fire_time) WHERE schedule_id IS NOT NULL"
            " DO NOTHING RETURNING id",
            schedule_id,
            fire_time,
        )
        assert fired == []
        # Another tick, and jobs without a schedule (NULLs are distinct), are unaffected.
        await conn.execute(insert_job, schedule_id, datetime(2030, 1, 1, 13, tzinfo=UTC))
        await conn.execute(insert_job, None, None)
        await conn.execute(insert_job, None, None)
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 4
        # Deleting the schedule keeps its jobs (ON DELETE SET NULL).
        await conn.execute("DELETE FROM schedules WHERE id = $1", schedule_id)
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE schedule_id IS NULL") == 4
    finally:
        await conn.close()


async def test_check_constraints_reject_nonsense(migrated_db: str) -> None:
    conn = await asyncpg.connect(migrated_db)
    try:
        await _add_tenant(conn)
        with pytest.raises(asyncpg.CheckViolationError, match="ck_schedules_cron_xor_interval"):
            await conn.execute(
                "INSERT INTO schedules (tenant_id, name, cron, interval_seconds, job_template)"
                " VALUES ('acme', 'both', '* * * * *', 60, '{}')"
            )
        with pytest.raises(asyncpg.CheckViolationError, match="ck_jobs_state"):
            await conn.execute(
                "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts,"
                " backoff, timeout_seconds) VALUES ('acme', 't', 'q', 'pending', '{}', 1,"
                " '{}', 1)"
            )
    finally:
        await conn.close()


async def test_downgrade_removes_everything_and_upgrade_again_works(migrated_db: str) -> None:
    await asyncio.to_thread(migrate.downgrade, migrated_db)

    # alembic keeps its (now empty) version table; nothing of Jobline's remains.
    assert await _public_tables(migrated_db) == {"alembic_version"}
    assert await _public_functions(migrated_db) == set()
    assert await _fetch(migrated_db, "SELECT 1 FROM pg_trigger WHERE NOT tgisinternal") == []
    assert await asyncio.to_thread(migrate.current, migrated_db) is None

    await asyncio.to_thread(migrate.upgrade, migrated_db)
    assert await _public_tables(migrated_db) == EXPECTED_TABLES | {"alembic_version"}
    assert await _public_functions(migrated_db) == {
        "jobline_outbox_notify",
        "jobline_catalog_notify",
    }
    assert await asyncio.to_thread(migrate.current, migrated_db) == HEAD
    assert await _schema_diffs(migrated_db) == []


async def test_concurrent_upgrades_from_threads(empty_db: str) -> None:
    await asyncio.gather(*(asyncio.to_thread(migrate.upgrade, empty_db) for _ in range(4)))
    assert await asyncio.to_thread(migrate.current, empty_db) == HEAD
    assert await _public_tables(empty_db) == EXPECTED_TABLES | {"alembic_version"}


async def test_concurrent_upgrades_from_processes(empty_db: str) -> None:
    # Replicas starting together. Without env.py's advisory lock all but one fail on
    # "relation already exists" (or a duplicate alembic_version row).
    code = "import sys; from jobline.pg import migrate; migrate.upgrade(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            empty_db,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    failures = [err.decode() for p, (_, err) in zip(procs, outputs, strict=True) if p.returncode]
    assert failures == []
    assert await asyncio.to_thread(migrate.current, empty_db) == HEAD
    assert await _schema_diffs(empty_db) == []


async def test_current_of_a_never_migrated_database_is_none(empty_db: str) -> None:
    assert await asyncio.to_thread(migrate.current, empty_db) is None


async def test_migrate_called_on_a_running_loop_still_works(empty_db: str) -> None:
    # Blocks this loop while a helper thread migrates: allowed, if not recommended.
    migrate.upgrade(empty_db)
    assert migrate.current(empty_db) == HEAD


async def test_check_database_names_the_server_and_the_reason(
    pg_server_url: str, empty_db: str
) -> None:
    await db.check_database(empty_db)
    with pytest.raises(DependencyUnavailable) as refused:
        await db.check_database("postgresql://postgres@127.0.0.1:1/jobline", timeout=3)
    assert str(refused.value) == "PostgreSQL at 127.0.0.1:1/jobline unreachable: connection refused"
    missing = db.database_url(pg_server_url, f"jobline_absent_{uuid4().hex[:8]}")
    with pytest.raises(DependencyUnavailable, match="does not exist"):
        await db.check_database(missing)


async def test_an_outbox_insert_of_waiting_rows_announces_the_earliest(migrated_db: str) -> None:
    """Rows due now wake the relays (""); rows not yet due tell them when (the epoch of the
    earliest), so an idle relay sleeps exactly that long."""
    received: list[str] = []
    listener = await asyncpg.connect(migrated_db)
    writer = await asyncpg.connect(migrated_db)
    try:
        await listener.add_listener(OUTBOX_CHANNEL, lambda *args: received.append(args[3]))
        await writer.execute(
            "INSERT INTO outbox (topics, payloads, available_at) VALUES"
            " (ARRAY['events'], ARRAY['a'::bytea], now()),"
            " (ARRAY['jobs.q'], ARRAY['b'::bytea], '2999-01-01T00:00:00Z'),"
            " (ARRAY['jobs.q'], ARRAY['c'::bytea], '2998-01-01T00:00:00Z')"
        )
        await writer.execute("SELECT pg_sleep(0.1)")  # notifications arrive after the commit
        for _ in range(50):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        expected = datetime(2998, 1, 1, tzinfo=UTC).timestamp()
        assert received[0] == ""
        assert float(received[1]) == expected
    finally:
        await writer.close()
        await listener.close()


async def test_quiet_rows_wake_no_relay_but_a_statement_with_a_loud_row_does(
    migrated_db: str,
) -> None:
    """Rows of lifecycle events only are quiet (0004): no NOTIFY, which would serialise the
    worker's commits; a statement with any row due now that is not quiet still notifies."""
    received: list[str] = []
    listener = await asyncpg.connect(migrated_db)
    writer = await asyncpg.connect(migrated_db)
    try:
        await listener.add_listener(OUTBOX_CHANNEL, lambda *args: received.append(args[3]))
        await writer.execute(
            "INSERT INTO outbox (topics, payloads, quiet)"
            " VALUES (ARRAY['events'], ARRAY['a'::bytea], true)"
        )
        await writer.execute(
            "INSERT INTO outbox (topics, payloads, quiet) VALUES"
            " (ARRAY['events'], ARRAY['b'::bytea], true),"
            " (ARRAY['jobs.q'], ARRAY['c'::bytea], false)"
        )
        await writer.execute("NOTIFY jobline_outbox, 'end'")
        for _ in range(100):
            if "end" in received:
                break
            await asyncio.sleep(0.02)
        assert received == ["", "end"]  # one NOTIFY, from the second statement
    finally:
        await writer.close()
        await listener.close()


async def test_catalog_changes_notify(migrated_db: str) -> None:
    """api_keys and job_type_policies notify jobline_catalog (the gateways' caches listen)."""
    from jobline.pg.listen import CATALOG_CHANNEL

    received: list[str] = []
    listener = await asyncpg.connect(migrated_db)
    writer = await asyncpg.connect(migrated_db)
    try:
        await listener.add_listener(CATALOG_CHANNEL, lambda *args: received.append(args[3]))
        await _add_tenant(writer)
        await writer.execute(
            "INSERT INTO job_type_policies (tenant_id, type, max_attempts, source)"
            " VALUES ('acme', 't', 3, 'test')"
        )
        await writer.execute(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes)"
            " VALUES (gen_random_uuid(), 'acme', 'k', 'abcd1234', 'h', '{}')"
        )
        await writer.execute("UPDATE api_keys SET revoked_at = now()")
        for _ in range(50):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.05)
        assert received == ["job_type_policies", "api_keys", "api_keys"]
    finally:
        await writer.close()
        await listener.close()


async def test_0005_declares_the_queues_already_in_use(empty_db: str) -> None:
    """Jobs a previous release accepted (unless finished) and schedules keep their queues."""
    await asyncio.to_thread(migrate.upgrade, empty_db, "0004")
    insert_job = (
        "INSERT INTO jobs (tenant_id, type, queue, state, payload, max_attempts, backoff,"
        " timeout_seconds) VALUES ('acme', 'report', $1, $2, '{}', 3,"
        ' \'{"kind": "exponential", "base_seconds": 1, "max_seconds": 60}\', 30)'
    )
    conn = await asyncpg.connect(empty_db)
    try:
        await _add_tenant(conn)
        for queue, state in (("waiting", "queued"), ("failed", "dead"), ("old", "succeeded")):
            await conn.execute(insert_job, queue, state)
        await conn.execute(
            "INSERT INTO schedules (tenant_id, name, interval_seconds, job_template) VALUES"
            " ('acme', 'a', 60, '{\"queue\": \"reports\"}'), ('acme', 'b', 60, '{}')"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(migrate.upgrade, empty_db)
    rows = await _fetch(empty_db, "SELECT name, partitions, declared_by FROM queues")
    assert {r["name"]: (r["partitions"], r["declared_by"]) for r in rows} == {
        "default": (None, "migration"),
        "waiting": (None, "migration"),
        "failed": (None, "migration"),
        "reports": (None, "migration"),
    }


async def test_registry_changes_notify(migrated_db: str) -> None:
    """queues and job_types notify jobline_catalog (the gateways' registry copies listen)."""
    from jobline.pg.listen import CATALOG_CHANNEL

    received: list[str] = []
    listener = await asyncpg.connect(migrated_db)
    writer = await asyncpg.connect(migrated_db)
    try:
        await listener.add_listener(CATALOG_CHANNEL, lambda *args: received.append(args[3]))
        await writer.execute("INSERT INTO queues (name, declared_by) VALUES ('mail', 'test')")
        await writer.execute(
            "INSERT INTO job_types (name, queue, source, registered_by)"
            " VALUES ('send', 'mail', 'worker', 'w1')"
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await writer.execute(
                "INSERT INTO job_types (name, queue, source, registered_by)"
                " VALUES ('lost', 'nowhere', 'worker', 'w1')"
            )
        with pytest.raises(asyncpg.CheckViolationError, match="ck_queues_name_valid"):
            await writer.execute("INSERT INTO queues (name, declared_by) VALUES ('dlq', 'x')")
        for _ in range(50):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        assert received == ["queues", "job_types"]
    finally:
        await writer.close()
        await listener.close()


async def test_the_outbox_is_vacuumed_after_a_fixed_number_of_dead_rows(migrated_db: str) -> None:
    """0011: autovacuum's trigger for the outbox is a fixed count (its live rows stay few)."""
    conn = await asyncpg.connect(migrated_db)
    try:
        options = await conn.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'outbox'")
    finally:
        await conn.close()
    assert "autovacuum_vacuum_scale_factor=0" in options
    assert "autovacuum_vacuum_threshold=5000" in options
    assert "autovacuum_vacuum_cost_delay=0" in options
