"""``python -m bench.workflows``: what a workflow costs over plain jobs, and a chain's step.

Against the same servers as ``make bench`` (embedded PostgreSQL and broker; one gateway, one
relay, one worker with the no-op handler), one after the other, each after a warm-up:

- independent: 1,000 no-op jobs in one batch; wall time from the submit to the last success,
  and CPU of every process;
- fan-out/fan-in: one workflow of 1,000 no-op nodes and one callback that depends on all of
  them; wall time from the submit to the callback's success, and CPU;
- the overhead per node is the difference divided by 1,000;
- chain: one workflow of 100 no-op steps, each depending on the one before; per step, the
  time from a step's end (its ``finished_at``) to the next one's start (``started_at``), and
  the chain's wall time divided by its steps.

Figures are measurements of this machine at this moment; ``--rounds`` repeats each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from typing import Any
from uuid import UUID

import httpx

from bench import cpu
from bench.servers import GATEWAY_ENV, JOB_TYPE, Bench, bench
from bench.workloads import WORKER_ARGS

QUEUE = "c"
FAN_OUT = 1000
CHAIN = 100


async def _wait_succeeded(run: Bench, ids: list[str], timeout: float = 300.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    uuids = [UUID(i) for i in ids]
    while time.monotonic() < deadline:
        rows = await run.fetch(
            "SELECT count(*) AS n FROM jobs WHERE id = ANY($1::uuid[]) AND state = 'succeeded'",
            uuids,
        )
        if rows[0]["n"] == len(ids):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{len(ids)} jobs did not all succeed within {timeout}s")


def _node(ref: str, *parents: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "type": JOB_TYPE,
        "queue": QUEUE,
        "payload": {},
        "depends_on": list(parents),
    }


async def _measure(
    run: Bench, http: httpx.AsyncClient, path: str, body: dict[str, Any], last: str
) -> tuple[float, dict[str, float], list[str]]:
    """Submit ``body`` to ``path``; wall seconds and CPU seconds until the job(s) ``last``
    names ("all", or a ref) succeeded; returns also every job id."""
    before = cpu.sample(run.pids())
    started = time.monotonic()
    response = await http.post(path, json=body)
    response.raise_for_status()
    answer = response.json()
    if path.endswith("batch"):
        ids = [j["id"] for j in answer["jobs"]]
        waited = ids
    else:
        ids = [n["job_id"] for n in answer["nodes"]]
        waited = [n["job_id"] for n in answer["nodes"] if last in ("all", n["ref"])]
    await _wait_succeeded(run, waited)
    wall = time.monotonic() - started
    return wall, cpu.sample(run.pids()).minus(before), ids


async def _round(run: Bench, http: httpx.AsyncClient) -> dict[str, Any]:
    jobs = [{"type": JOB_TYPE, "queue": QUEUE, "payload": {}} for _ in range(FAN_OUT)]
    plain_wall, plain_cpu, _ = await _measure(run, http, "/v1/jobs/batch", {"jobs": jobs}, "all")
    nodes = [_node(f"p{i}") for i in range(FAN_OUT)]
    nodes.append(_node("callback", *(f"p{i}" for i in range(FAN_OUT))))
    fan_wall, fan_cpu, _ = await _measure(run, http, "/v1/workflows", {"jobs": nodes}, "callback")
    steps = [_node("s0")] + [_node(f"s{i}", f"s{i - 1}") for i in range(1, CHAIN)]
    chain_wall, _, chain_ids = await _measure(run, http, "/v1/workflows", {"jobs": steps}, "all")
    rows = await run.fetch(
        "SELECT workflow_ref, started_at, finished_at FROM jobs WHERE id = ANY($1::uuid[])",
        [UUID(i) for i in chain_ids],
    )
    by_ref = {r["workflow_ref"]: r for r in rows}
    handoffs = [
        (by_ref[f"s{i}"]["started_at"] - by_ref[f"s{i - 1}"]["finished_at"]).total_seconds()
        for i in range(1, CHAIN)
    ]
    processes = sorted(set(plain_cpu) | set(fan_cpu))
    return {
        "independent_1000": {
            "wall_s": round(plain_wall, 3),
            "cpu_ms_per_job": cpu.per_job_ms(plain_cpu, FAN_OUT),
        },
        "fan_out_1000_fan_in_1": {
            "wall_s": round(fan_wall, 3),
            "cpu_ms_per_node": cpu.per_job_ms(fan_cpu, FAN_OUT + 1),
        },
        "overhead_per_node": {
            "wall_ms": round((fan_wall - plain_wall) * 1000 / FAN_OUT, 3),
            "cpu_ms": {
                p: round((fan_cpu.get(p, 0.0) - plain_cpu.get(p, 0.0)) * 1000 / FAN_OUT, 3)
                for p in processes
            },
        },
        "chain_100": {
            "wall_s": round(chain_wall, 3),
            "wall_ms_per_step": round(chain_wall * 1000 / CHAIN, 2),
            "handoff_ms_p50": round(statistics.median(handoffs) * 1000, 2),
            "handoff_ms_p90": round(statistics.quantiles(handoffs, n=10)[-1] * 1000, 2),
            "handoff_ms_max": round(max(handoffs) * 1000, 2),
        },
    }


async def _run(run: Bench, rounds: int) -> list[dict[str, Any]]:
    await asyncio.to_thread(run.start, "gateway", "gateway", extra=GATEWAY_ENV)
    await asyncio.to_thread(run.start, "relay", "relay")
    await asyncio.to_thread(run.start, "worker", "worker", *WORKER_ARGS, "--queues", QUEUE)
    gateway = run.services["gateway"].url
    headers = {"Authorization": f"Bearer {run.api_key}"}
    async with httpx.AsyncClient(base_url=gateway, headers=headers, timeout=120) as http:
        warm = [{"type": JOB_TYPE, "queue": QUEUE, "payload": {}} for _ in range(300)]
        await _measure(run, http, "/v1/jobs/batch", {"jobs": warm}, "all")
        results = []
        for n in range(rounds):
            results.append(await _round(run, http))
            print(f"round {n + 1}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
        return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workflows")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with bench() as run:
        results = asyncio.run(_run(run, args.rounds))
    print(json.dumps({"rounds": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
