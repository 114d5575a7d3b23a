"""Gateway figures: single-job POST throughput, batch throughput, submit-to-topic latency.

The gateway runs as a process (``python -m jobline_gateway``) against the benchmark's fresh
database; the load generator is this process, on the same machine, so the figures include
the client's own CPU use. The client is a minimal HTTP/1.1 keep-alive client on asyncio
streams (one connection per concurrent client, requests pre-encoded): httpx spent more CPU
per request (~4 ms) than the gateway itself, so on 2 cores it measured the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from bench.env import BenchEnv
from jobline import db, kafka, keystore, topics
from jobline.apikeys import ALL_SCOPES
from tests.stack import ServiceProcess

CLIENTS = 32
BATCH_CLIENTS = 8
BATCH_SIZE = 100
PHASE_SECONDS = 10.0
LATENCY_RATE = 500  # jobs per second
LATENCY_QUEUE = "latency"
ARRIVAL_DEADLINE = 30.0

GATEWAY_ENV = {
    # The benchmark measures the gateway, not its per-key rate limit.
    "JOBLINE_GATEWAY_RATE_LIMIT_PER_SECOND": "1000000",
    "JOBLINE_GATEWAY_RATE_LIMIT_BURST": "1000000",
    # A connection per concurrent request (a request holds one from authentication to
    # commit): with fewer, the pool's overflow connections are opened and closed per use.
    "JOBLINE_DB_POOL_SIZE": str(CLIENTS),
}


class RawClient:
    """HTTP/1.1 keep-alive POSTs over a fixed set of connections (one request at a time each).

    Enough HTTP for the gateway's JSON answers: a status line, headers, a Content-Length body.
    """

    def __init__(self, base_url: str, headers: dict[str, str], connections: int) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.size = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._all: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> RawClient:
        for _ in range(self.size):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._all:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def encode(self, path: str, body: Any) -> bytes:
        """A complete POST request with a JSON body, ready to send as many times as wanted."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        return head.encode() + payload

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Send a pre-encoded request on an idle connection: (status, body)."""
        reader, writer = await self._idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "transfer-encoding":
                    raise RuntimeError("chunked responses are not expected here")
            body = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()  # unknown state: this connection is not reused
            raise
        self._idle.put_nowait((reader, writer))
        return status, body


def run(env: BenchEnv) -> dict[str, Any]:
    return asyncio.run(_run(env))


async def _run(env: BenchEnv) -> dict[str, Any]:
    key = await _api_key(env)
    gateway = ServiceProcess(
        kind="gateway",
        env={**env.service_env(), **GATEWAY_ENV},
        log_path=env.work_dir / "gateway.log",
    )
    await asyncio.to_thread(gateway.start)
    figures: dict[str, Any] = {"clients": CLIENTS}
    try:
        auth = {"Authorization": f"Bearer {key}"}
        async with RawClient(gateway.url, auth, CLIENTS) as client:
            figures.update(await _single(client))
            figures.update(await _batch(client))
            await _drop_backlog(env)
            figures.update(await _latency(env, client))
    finally:
        await asyncio.to_thread(gateway.terminate)
    return figures


async def _api_key(env: BenchEnv) -> str:
    engine = db.create_engine(env.db_settings)
    try:
        async with db.transaction(engine) as conn:
            _, plaintext = await keystore.create_key(
                conn, tenant_id="bench", name="bench", scopes=ALL_SCOPES
            )
    finally:
        await engine.dispose()
    return plaintext


async def _hammer(client: RawClient, workers: int, body: Any, path: str) -> tuple[int, int]:
    """``workers`` loops POSTing ``body`` for PHASE_SECONDS: (successes, errors)."""
    deadline = time.monotonic() + PHASE_SECONDS
    request = client.encode(path, body)
    ok = errors = 0

    async def worker() -> None:
        nonlocal ok, errors
        while time.monotonic() < deadline:
            status, _ = await client.send(request)
            if status == 201:
                ok += 1
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return ok, errors


async def _single(client: RawClient) -> dict[str, Any]:
    body = {"type": "bench.single", "payload": {"n": 1, "text": "hello"}}
    started = time.monotonic()
    ok, errors = await _hammer(client, CLIENTS, body, "/v1/jobs")
    elapsed = time.monotonic() - started
    return {"single_post_jobs_per_second": round(ok / elapsed, 1), "single_post_errors": errors}


async def _batch(client: RawClient) -> dict[str, Any]:
    body = {"jobs": [{"type": "bench.batch", "payload": {"n": i}} for i in range(BATCH_SIZE)]}
    started = time.monotonic()
    ok, errors = await _hammer(client, BATCH_CLIENTS, body, "/v1/jobs/batch")
    elapsed = time.monotonic() - started
    return {
        "batch_size": BATCH_SIZE,
        "batch_clients": BATCH_CLIENTS,
        "batch_jobs_per_second": round(ok * BATCH_SIZE / elapsed, 1),
        "batch_requests_per_second": round(ok / elapsed, 1),
        "batch_errors": errors,
    }


async def _drop_backlog(env: BenchEnv) -> None:
    """The throughput phases leave a large unpublished outbox; latency is measured without it."""
    engine = db.create_engine(env.db_settings)
    try:
        async with db.transaction(engine) as conn:
            await conn.execute(text("DELETE FROM outbox"))
    finally:
        await engine.dispose()


async def _latency(env: BenchEnv, client: RawClient) -> dict[str, Any]:
    try:
        import jobline_relay  # noqa: F401
    except ImportError:
        return {"submit_to_topic": "not measured: no outbox relay installed"}
    topic = topics.work_topic(env.topic_prefix, LATENCY_QUEUE)
    await kafka.ensure_topics(
        env.kafka_settings, topics.core_topics(env.topic_prefix, ["default", LATENCY_QUEUE])
    )
    relay = ServiceProcess(kind="relay", env=env.service_env(), log_path=env.work_dir / "relay.log")
    try:
        await asyncio.to_thread(relay.start)
    except (RuntimeError, TimeoutError) as exc:
        return {"submit_to_topic": f"not measured: relay did not start ({exc})"[:300]}
    try:
        return await _measure(env, client, topic)
    finally:
        await asyncio.to_thread(relay.terminate)


async def _measure(env: BenchEnv, client: RawClient, topic: str) -> dict[str, Any]:
    """Paced submissions; a consumer on the work topic timestamps each job's arrival."""
    consumer = kafka.make_consumer(env.kafka_settings, topic, group_id=None)
    await consumer.start()
    submitted: dict[str, float] = {}
    acknowledged: dict[str, float] = {}
    arrived: dict[str, float] = {}
    all_sent = False
    all_arrived = asyncio.Event()

    def check_done() -> None:
        if all_sent and submitted.keys() <= arrived.keys():
            all_arrived.set()

    async def consume() -> None:
        async for message in consumer:
            key = message.key.decode() if message.key else ""
            arrived.setdefault(key, time.monotonic())
            check_done()

    reader = asyncio.create_task(consume())
    try:
        await asyncio.sleep(1.0)  # let the consumer get its partitions
        total = int(LATENCY_RATE * PHASE_SECONDS)
        start = time.monotonic()
        failures = 0

        async def submit_one(i: int) -> None:
            nonlocal failures
            await asyncio.sleep(max(start + i / LATENCY_RATE - time.monotonic(), 0))
            sent = time.monotonic()
            status, body = await client.send(
                client.encode(
                    "/v1/jobs",
                    {"type": "bench.latency", "queue": LATENCY_QUEUE, "payload": {"i": i}},
                )
            )
            if status == 201:
                job_id = json.loads(body)["id"]
                acknowledged[job_id] = time.monotonic()
                submitted[job_id] = sent
            else:
                failures += 1

        await asyncio.gather(*(submit_one(i) for i in range(total)))
        achieved = total / (time.monotonic() - start)
        all_sent = True
        check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_arrived.wait(), ARRIVAL_DEADLINE)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await consumer.stop()
    figures = _summary(submitted, arrived, achieved, failures)
    # The relay's share: from the gateway's 201 (job committed) to arrival on the topic.
    after_ack = sorted(arrived[k] - acknowledged[k] for k in acknowledged if k in arrived)
    if after_ack:
        q = statistics.quantiles(after_ack, n=100, method="inclusive")
        figures["committed_to_topic_p50_ms"] = round(q[49] * 1000, 1)
        figures["committed_to_topic_p99_ms"] = round(q[98] * 1000, 1)
    return figures


def _summary(
    submitted: dict[str, float], arrived: dict[str, float], achieved: float, failures: int
) -> dict[str, Any]:
    """Latency = arrival on the work topic - the moment the client sent the POST."""
    latencies = sorted(arrived[k] - submitted[k] for k in submitted if k in arrived)
    if not latencies:
        return {"submit_to_topic": "not measured: no message arrived", "submit_failures": failures}
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "latency_target_jobs_per_second": LATENCY_RATE,
        "latency_achieved_jobs_per_second": round(achieved, 1),
        "submit_to_topic_p50_ms": round(quantiles[49] * 1000, 1),
        "submit_to_topic_p99_ms": round(quantiles[98] * 1000, 1),
        "submit_to_topic_max_ms": round(latencies[-1] * 1000, 1),
        "latency_jobs": len(submitted),
        "latency_missing": len(submitted) - len(latencies),
        "latency_submit_failures": failures,
    }
