"""How much CPU the client spends per call, itself: ``python -m jobline.client.overhead``.

Two measures, each against a plain ``httpx.Client`` doing the same requests:

* ``--mock`` (default when no gateway answers): an in-process transport answers a canned
  job, so the figure is the client alone -- building the request and its Idempotency-Key,
  the retry loop, parsing the answer into ``JobOut``.
* against a gateway (``--url``/``--key``, JOBLINE_GATEWAY_URL/JOBLINE_API_KEY or the dev
  stack): real submissions, and this process's CPU time per call (the gateway's own time is
  in its process, not counted).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from jobline.client import Client, ConfigurationError, api_key, gateway_url

_JOB: dict[str, Any] = {
    "id": str(uuid.uuid4()),
    "type": "echo",
    "queue": "default",
    "status": "queued",
    "priority": 0,
    "payload": {"n": 1},
    "metadata": {},
    "attempt": 0,
    "max_attempts": 5,
    "attempts_left": 5,
    "backoff": {"kind": "exponential_jitter", "base_seconds": 1.0, "max_seconds": 300.0},
    "timeout_seconds": 300.0,
    "timings": {
        "created_at": "2030-01-01T00:00:00Z",
        "scheduled_for": "2030-01-01T00:00:00Z",
        "started_at": None,
        "finished_at": None,
    },
    "cancel_requested_at": None,
    "last_error": None,
    "result": None,
    "links": {"self": "/v1/jobs/x", "attempts": "a", "cancel": "c", "redrive": "r"},
}
_BODY = json.dumps(_JOB).encode()


def _canned(request: httpx.Request) -> httpx.Response:
    return httpx.Response(201, content=_BODY, headers={"content-type": "application/json"})


def _cpu_per_call(call: Callable[[], object], n: int) -> float:
    for _ in range(min(n // 10, 200)):  # warm up: imports, pools, caches
        call()
    started = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - started) / n


def measure(n: int, url: str | None, key: str | None) -> dict[str, Any]:
    """Client CPU per submit (µs), ours and plain httpx's, and the difference."""
    live = url is not None and key is not None
    transport = None if live else httpx.MockTransport(_canned)
    base = url or "http://gateway.invalid"
    headers = {"Authorization": f"Bearer {key or 'jl_x'}"}
    job = {"type": "echo", "payload": {"n": 1}}
    with (
        Client(base, key or "jl_x", transport=transport) as ours,
        httpx.Client(base_url=base, headers=headers, transport=transport) as plain,
    ):

        def raw() -> object:
            key = str(uuid.uuid4())
            while True:  # a rate-limited gateway paces both clients alike
                response = plain.post("/v1/jobs", json=job, headers={"Idempotency-Key": key})
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After", "1")))
            response.raise_for_status()
            return response.json()

        ours_s = _cpu_per_call(lambda: ours.submit("echo", {"n": 1}), n)
        plain_s = _cpu_per_call(raw, n)
    return {
        "mode": "gateway" if live else "mock",
        "calls": n,
        "client_cpu_us_per_submit": round(ours_s * 1e6, 1),
        "plain_httpx_cpu_us_per_submit": round(plain_s * 1e6, 1),
        "overhead_us_per_submit": round((ours_s - plain_s) * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per measure")
    parser.add_argument("--mock", action="store_true", help="no gateway: a canned answer")
    parser.add_argument("--url", help="the gateway (default JOBLINE_GATEWAY_URL or the dev one)")
    parser.add_argument("--key", help="an API key with jobs:write (default JOBLINE_API_KEY)")
    args = parser.parse_args()
    url, key = None, None
    if not args.mock:
        url = args.url or gateway_url()
        try:
            key = args.key or api_key()
            httpx.get(f"{url}/healthz", timeout=2).raise_for_status()
        except (ConfigurationError, httpx.HTTPError):
            url, key = None, None  # nothing to measure against: the client alone
    print(json.dumps(measure(args.n, url, key)))


if __name__ == "__main__":
    main()
