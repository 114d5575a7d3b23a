"""The console's pages over 1,000,000 jobs: server time and the queries each page costs.

A scratch database (embedded PostgreSQL, or JOBLINE_BENCH_DATABASE_URL's server) gets one
tenant with 1,000,000 jobs over 7 days (``generate_series``: 10 types, 3 queues, mostly
finished, some dead, queued and running; 1 in 100 with an Idempotency-Key) and a second
tenant with 50,000. The gateway runs in this process (httpx over ASGI, no network), logged in
through the form; each page is requested ``--repeat`` times and the wall time of the request
(the whole server side: routing, session check, queries, template) is reported as the median
and the worst. Each page's statements are counted (every asyncpg call on the app's pool) and
the jobs listing's one query is shown with EXPLAIN ANALYZE.

Usage: ``python -m bench.console_pages [--jobs N] [--repeat N]`` (``make bench-console``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import httpx

from jobline.core.apikeys import ALL_SCOPES, Scope
from jobline.pg import keystore, registry
from jobline_gateway.app import create_app
from jobline_gateway.settings import Settings

TENANT = "bench-console"
OTHER = "bench-other"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NEXT = re.compile(r'href="(/ui/jobs\?[^"]*)" id="next-page"')

# One INSERT ... SELECT: the rows a long-running tenant has (a week, mostly finished).
FILL = """
INSERT INTO jobs (id, tenant_id, type, queue, state, payload, max_attempts, backoff,
                  timeout_seconds, run_at, created_at, updated_at, started_at, finished_at,
                  attempt, last_error, idempotency_key)
SELECT gen_random_uuid(), $1, 'type-' || (n % 10), 'queue-' || (n % 3),
       CASE WHEN n % 100 < 80 THEN 'succeeded' WHEN n % 100 < 90 THEN 'dead'
            WHEN n % 100 < 95 THEN 'queued' WHEN n % 100 < 97 THEN 'running'
            ELSE 'cancelled' END,
       jsonb_build_object('n', n), 3, '{"kind": "fixed", "base_seconds": 1, "max_seconds": 1}',
       60, at, at, at, at + interval '1 second', at + interval '2 seconds',
       1,
       CASE WHEN n % 100 BETWEEN 80 AND 89
            THEN jsonb_build_object('error_class', 'E' || (n % 4), 'message', 'failed ' || n)
       END,
       CASE WHEN n % 100 = 0 THEN 'key-' || n END
FROM (SELECT n, now() - (n * interval '1 second') * (604800.0 / $2) AS at
      FROM generate_series(1, $2) AS n) AS s
"""


async def _fill(url: str, jobs: int) -> str:
    """The tenants, their jobs, a tenant key; returns the key."""
    conn = await asyncpg.connect(url)
    try:
        for tenant in (TENANT, OTHER):
            await keystore.ensure_tenant(conn, tenant)
        await registry.declare_missing_queues(conn, ["queue-0", "queue-1", "queue-2"], "bench")
        started = time.perf_counter()
        await conn.execute(FILL, TENANT, jobs)
        await conn.execute(FILL, OTHER, max(1, jobs // 20))
        await conn.execute("VACUUM ANALYZE jobs")
        print(f"# inserted {jobs:,} + {jobs // 20:,} jobs in {time.perf_counter() - started:.0f} s")
        scopes = frozenset(ALL_SCOPES - {Scope.ADMIN})
        _, key = await keystore.create_key(conn, tenant_id=TENANT, name="bench", scopes=scopes)
        return key
    finally:
        await conn.close()


class Statements:
    """Counts the statements sent on asyncpg connections (and keeps the last page's)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    @contextmanager
    def counting(self) -> Iterator[None]:
        names = ("fetch", "fetchrow", "fetchval", "execute")
        originals: dict[str, Callable[..., Any]] = {
            n: getattr(asyncpg.Connection, n) for n in names
        }

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            async def counted(conn: Any, sql: str, *args: Any, **kw: Any) -> Any:
                self.sent.append((sql, args))
                return await original(conn, sql, *args, **kw)

            return counted

        for name, original in originals.items():
            setattr(asyncpg.Connection, name, wrap(original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(asyncpg.Connection, name, original)


async def _login(client: httpx.AsyncClient, key: str) -> None:
    form = await client.get("/ui/login")
    token = CSRF.search(form.text)
    assert token is not None
    answer = await client.post(
        "/ui/login", data={"csrf_token": token.group(1), "api_key": key, "next": "/ui/jobs"}
    )
    assert answer.status_code == 303, answer.text


async def _deep_page(client: httpx.AsyncClient, pages: int) -> str:
    path = "/ui/jobs"
    for _ in range(pages):
        found = NEXT.search((await client.get(path)).text)
        assert found is not None
        path = found.group(1).replace("&amp;", "&")
    return path


async def _explain(url: str, sql: str, args: tuple[Any, ...]) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args)
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def run(url: str, jobs: int, repeat: int) -> list[dict[str, Any]]:
    key = await _fill(url, jobs)
    settings = Settings(
        database_url=url,
        kafka_bootstrap="127.0.0.1:9",  # never contacted: no page here streams events
        gateway_rate_limit_per_second=1e6,
        gateway_rate_limit_burst=10**6,
        gateway_address_rate_per_second=1e6,
        gateway_address_burst=10**7,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench"
        ) as client,
    ):
        await _login(client, key)
        conn = await asyncpg.connect(url)
        sample = await conn.fetchrow(
            "SELECT id, idempotency_key FROM jobs WHERE tenant_id = $1"
            " AND idempotency_key IS NOT NULL LIMIT 1",
            TENANT,
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, job_ids, response,"
            " expires_at) VALUES ($1, $2, 'x', ARRAY[$3::uuid], '{}', now() + interval '1 day')",
            TENANT,
            sample["idempotency_key"],
            sample["id"],
        )
        await conn.close()
        pages = {
            "jobs, newest": "/ui/jobs",
            "jobs, state=dead": "/ui/jobs?state=dead",
            "jobs, type=type-3": "/ui/jobs?type=type-3",
            "jobs, state+type": "/ui/jobs?state=queued&type=type-3",
            "jobs, queue=queue-2": "/ui/jobs?queue=queue-2",
            "jobs, last 1h": "/ui/jobs?since=1h",
            "jobs, page 200 (keyset)": await _deep_page(client, 200),
            "jobs, id prefix": f"/ui/jobs?q={str(sample['id'])[:6]}",
            "jobs, idempotency key": f"/ui/jobs?q={sample['idempotency_key']}",
            "job detail": f"/ui/jobs/{sample['id']}",
            "dlq groups": "/ui/dlq",
            "schedules": "/ui/schedules",
            "overview": "/ui",
        }
        results = []
        statements = Statements()
        for name, path in pages.items():
            times = []
            for _ in range(repeat):
                statements.sent.clear()
                with statements.counting():
                    started = time.perf_counter()
                    answer = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            listing = [s for s in statements.sent if s[0].startswith("SELECT * FROM jobs")]
            plan = await _explain(url, *listing[0]) if listing else []
            results.append(
                {
                    "page": name,
                    "path": path[:80],
                    "median_ms": round(statistics.median(times), 1),
                    "max_ms": round(max(times), 1),
                    "queries": len(statements.sent),
                    "plan": [line for line in plan if "Scan" in line or "Execution" in line][:3],
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    from bench.servers import scratch_database

    with scratch_database() as url:
        results = asyncio.run(run(url, options.jobs, options.repeat))
    for row in results:
        print(json.dumps(row))
    print()
    print(f"{'page':28} {'median ms':>10} {'max ms':>8} {'queries':>8}")
    for row in results:
        print(f"{row['page']:28} {row['median_ms']:>10} {row['max_ms']:>8} {row['queries']:>8}")


if __name__ == "__main__":
    main()
