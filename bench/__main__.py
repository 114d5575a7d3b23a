"""``python -m bench``: the speed workloads A1, A2, B, C; one JSON object and a table.

Figures are measurements of this machine at this moment, nothing else: compare runs from
one sitting. ``python -m bench --only a1,b`` runs a subset (B needs A2's published jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from typing import Any

from bench import fairness, flow, workloads
from bench.servers import GATEWAY_ENV, Bench, bench

ALL = ("a1", "a2", "b", "c")
# Not in the default run (which must stay under five minutes): ``--only p,f``.
EXTRA = ("p", "f")
PROCESSES = ("gateway", "relay", "worker", "postgres", "broker", "servers", "client")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated: a1,a2,b,c,p,f")
    args = parser.parse_args(argv)
    wanted = [w for w in args.only.split(",") if w]
    if unknown := set(wanted) - set(ALL) - set(EXTRA):
        parser.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
    if "b" in wanted and "a2" not in wanted:
        parser.error("b drains the jobs a2 submits: run a2 too")
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "jobs_per_workload": workloads.N,
    }
    started = time.monotonic()
    with bench() as run:
        report |= asyncio.run(_run(run, wanted))
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))
    print(table(report), file=sys.stderr)
    return 0


async def _run(run: Bench, wanted: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    await asyncio.to_thread(run.start, "gateway", "gateway", extra=GATEWAY_ENV)
    await asyncio.to_thread(run.start, "relay", "relay")
    if "a1" in wanted:
        figures["A1_enqueue_one_by_one"] = await workloads.enqueue_one_by_one(run, "a1")
        _progress("A1", figures["A1_enqueue_one_by_one"])
    if "a2" in wanted:
        figures["A2_enqueue_bulk"] = await workloads.enqueue_bulk(run, "a2")
        _progress("A2", figures["A2_enqueue_bulk"])
    if "b" in wanted:
        figures["B_drain"] = await workloads.drain(run, "a2")
        _progress("B", figures["B_drain"])
    if "c" in wanted:
        args = (*workloads.WORKER_ARGS, "--queues", "c")
        await asyncio.to_thread(run.start, "worker", "worker", *args)
        await workloads.warm_up(run, "c")
        figures["C_latency_500"] = await workloads.latency(run, "c", rate=500, clients=1)
        _progress("C500", figures["C_latency_500"])
        figures["C_latency_2000"] = await workloads.latency(run, "c", rate=2000, clients=4)
        _progress("C2000", figures["C_latency_2000"])
        await asyncio.to_thread(run.stop, "worker")
    if "p" in wanted:
        figures["P_priority"] = await flow.priority(run)
        _progress("P", figures["P_priority"])
        figures["P_limits"] = await flow.limits(run)
        _progress("P_limits", figures["P_limits"])
    if "f" in wanted:
        figures["F_fairness"] = await fairness.fairness(run)
        _progress("F", figures["F_fairness"])
    return figures


def _progress(name: str, figures: dict[str, Any]) -> None:
    statements = figures.pop("statements", [])
    print(f"{name}: {json.dumps(figures)}", file=sys.stderr, flush=True)
    for line in statements:
        print(f"    {line}", file=sys.stderr, flush=True)


def table(report: dict[str, Any]) -> str:
    """The figures as a plain-text table: rate/latency, then CPU ms per job by process."""
    head = f"{'workload':<24}{'jobs/s':>10}{'p50 ms':>9}{'p99 ms':>9}  " + "".join(
        f"{p:>9}" for p in PROCESSES
    )
    lines = [head, "-" * len(head)]
    for name, figures in report.items():
        if not isinstance(figures, dict) or "cpu_ms_per_job" not in figures:
            continue
        rate = figures.get("jobs_per_second", figures.get("achieved_per_second"))
        cpu = figures["cpu_ms_per_job"]
        lines.append(
            f"{name:<24}{rate!s:>10}{figures.get('p50_ms', '')!s:>9}"
            f"{figures.get('p99_ms', '')!s:>9}  "
            + "".join(f"{cpu.get(p, 0):>9.3f}" for p in PROCESSES)
        )
    lines.append("(CPU columns: milliseconds of CPU per job; 'servers' sums all but the client)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
