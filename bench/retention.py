"""``python -m bench.retention``: table sizes over time under a steady load of finished jobs.

Writes what a worker leaves behind for each finished job (the job row, its attempts, the
submission's Idempotency-Key; tests.support.insert_finished_jobs) at ``--rate`` jobs per
second, each purgeable ``--keep`` seconds later, while the relay's retention task
(jobline_relay.retention, the relay's defaults except the interval) purges them. Every
``--sample`` seconds it prints one JSON line: live rows and ``pg_total_relation_size`` of each
table (heap, indexes and TOAST). With ``--no-purge`` the same load runs without the purge,
for comparison. Figures, not a test: autovacuum's timing (one minute apart by default) makes
the sizes saw-tooth around a plateau.

Uses an embedded PostgreSQL unless ``JOBLINE_BENCH_DATABASE_URL`` names a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from jobline.dev.embedded import EmbeddedPostgres, free_port
from jobline.pg import db, migrate
from jobline.pg.db import Database
from jobline.pg.keystore import ensure_tenant
from jobline.settings import load
from jobline_relay.retention import Retention
from jobline_relay.settings import Settings
from tests.support import insert_finished_jobs

TABLES = ("jobs", "job_attempts", "idempotency_keys")
TICK_SECONDS = 0.1


async def sample(database: Database, started: float) -> dict[str, Any]:
    async with database.connection() as conn:
        row: dict[str, Any] = {"t": round(time.monotonic() - started, 1)}
        for table in TABLES:
            row[f"{table}_rows"] = await conn.fetchval(f"SELECT count(*) FROM {table}")
            size = await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            row[f"{table}_kib"] = size // 1024
    return row


async def run(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = load(
        Settings,
        database_url=url,
        kafka_bootstrap="127.0.0.1:9",  # the purge never talks to the broker
        retention_interval_seconds=args.interval,
    )
    samples: list[dict[str, Any]] = []
    async with Database(settings, application_name="bench-retention") as database:
        tenant = f"bench-{uuid4().hex[:6]}"
        async with database.connection() as conn:
            await ensure_tenant(conn, tenant)
        retention = None if args.no_purge else Retention(settings, database)
        if retention is not None:
            retention.start()
        per_tick = max(1, round(args.rate * TICK_SECONDS))
        started = next_sample = time.monotonic()
        inserted = 0
        try:
            while (now := time.monotonic()) - started < args.seconds:
                if now >= next_sample:
                    samples.append(await sample(database, started))
                    print(json.dumps(samples[-1]), flush=True)
                    next_sample += args.sample
                await insert_finished_jobs(database, tenant, per_tick, keep=args.keep)
                inserted += per_tick
                await asyncio.sleep(max(0.0, TICK_SECONDS - (time.monotonic() - now)))
        finally:
            if retention is not None:
                await retention.stop()
        samples.append(await sample(database, started) | {"jobs_inserted": inserted})
        print(json.dumps(samples[-1]), flush=True)
    return samples


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retention")
    parser.add_argument("--seconds", type=float, default=300.0, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=200.0, help="finished jobs per second")
    parser.add_argument("--keep", type=float, default=30.0, help="retention of each job, s")
    parser.add_argument("--interval", type=float, default=5.0, help="purge round interval, s")
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--no-purge", action="store_true", help="the same load, no purge")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="jobline-bench-retention-") as work:
        server_url = os.environ.get("JOBLINE_BENCH_DATABASE_URL")
        pg = None
        if not server_url:
            pg = EmbeddedPostgres(Path(work) / "pg", free_port())
            pg.start()
            server_url = pg.url
        try:
            name = f"bench_retention_{uuid4().hex[:8]}"
            asyncio.run(db.create_database(server_url, name))
            url = db.database_url(server_url, name)
            migrate.upgrade(url)
            try:
                samples = asyncio.run(run(url, args))
            finally:
                asyncio.run(db.drop_database(server_url, name))
        finally:
            if pg is not None:
                pg.stop()
    half = samples[len(samples) // 2 :]
    summary = {
        "rate_per_second": args.rate,
        "keep_seconds": args.keep,
        "purge": not args.no_purge,
        "jobs_inserted": samples[-1]["jobs_inserted"],
        **{
            f"{t}_kib_second_half_min_max": [
                min(s[f"{t}_kib"] for s in half),
                max(s[f"{t}_kib"] for s in half),
            ]
            for t in TABLES
        },
    }
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
