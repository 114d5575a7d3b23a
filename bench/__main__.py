"""``python -m bench [name ...]``: run the benchmarks, print one JSON object of figures.

Each module in BENCHMARKS exposes ``run(env: BenchEnv) -> dict`` and gets a fresh database
and topic prefix. Figures are measurements of this machine at this moment, nothing else.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time

from bench.env import bench_env

# name -> module; each module's run(env) returns a dict of figures.
BENCHMARKS: dict[str, str] = {
    "gateway": "bench.gateway",
    "relay": "bench.relay",
    "worker": "bench.worker",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    report: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with bench_env() as base:
        for name in names:
            module = importlib.import_module(BENCHMARKS[name])
            started = time.monotonic()
            figures = module.run(base.fresh())
            figures["wall_seconds"] = round(time.monotonic() - started, 1)
            report[name] = figures
            print(json.dumps({name: figures}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
