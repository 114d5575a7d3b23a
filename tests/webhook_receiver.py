"""A webhook receiver as a separate process, verifying each delivery with the Standard
Webhooks reference library (``standardwebhooks``), and the tests' handle on it.

Run: ``python tests/webhook_receiver.py`` prints ``LISTENING <port>`` once it serves on
127.0.0.1. Paths decide the answer: ``/ok/...`` 200; ``/fail/<n>/...`` 500 for the first
``n`` requests of each ``webhook-id``, then 200; ``/down/...`` always 500; ``/hold/<name>/...``
answers 200 only once ``POST /_release/<name>`` was called (the request waits). A path's secret is
registered with ``POST /_secret`` (``{"path": ..., "secret": ...}``); a delivery whose
signature does not verify with it gets 401. ``GET /_records`` lists every request received
(path, headers, body, whether it verified, the status answered).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[str, str] = {}
        self.records: list[dict[str, Any]] = []
        self.seen: Counter[tuple[str, str]] = Counter()
        self.holds: dict[str, threading.Event] = {}

    def hold(self, name: str) -> threading.Event:
        with self.lock:
            return self.holds.setdefault(name, threading.Event())


def _answer(path: str, seen: int) -> int:
    parts = path.strip("/").split("/")
    if parts[0] == "down":
        return 500
    if parts[0] == "fail" and len(parts) > 1 and parts[1].isdigit():
        return 500 if seen <= int(parts[1]) else 200
    return 200


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    import standardwebhooks  # the receiver's own library, as a subscriber would use it

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/_records":
                with state.lock:
                    self._reply(200, state.records)
            else:
                self._reply(404)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.startswith("/_release/"):
                state.hold(self.path.removeprefix("/_release/")).set()
                self._reply(204)
                return
            if self.path.startswith("/hold/"):
                state.hold(self.path.split("/")[2]).wait(60)
            if self.path == "/_secret":
                entry = json.loads(body)
                with state.lock:
                    state.secrets[entry["path"]] = entry["secret"]
                self._reply(204)
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                secret = state.secrets.get(self.path)
            verified, error, event = False, None, None
            try:
                if secret is None:
                    raise ValueError(f"no secret registered for {self.path}")
                event = standardwebhooks.Webhook(secret).verify(body, headers)
                verified = True
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            with state.lock:
                key = (self.path, headers.get("webhook-id", ""))
                state.seen[key] += 1
                status = _answer(self.path, state.seen[key]) if verified else 401
                state.records.append(
                    {
                        "path": self.path,
                        "headers": headers,
                        "body": body.decode(errors="replace"),
                        "event": event,
                        "verified": verified,
                        "error": error,
                        "status": status,
                    }
                )
            self._reply(status)

    return Handler


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_State()))
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


class Receiver:
    """The receiver process, from a test: start, register secrets, read what arrived."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        self.port = int(line.split()[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def secret(self, path: str, secret: str) -> None:
        """Deliveries to ``path`` must verify with ``secret``."""
        self._call("POST", "/_secret", {"path": path, "secret": secret})

    def release(self, name: str) -> None:
        """Let the requests waiting on ``/hold/<name>/...`` (and later ones) be answered."""
        self._call("POST", f"/_release/{name}")

    def records(self, path: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/_records")
        return [r for r in found if path is None or r["path"] == path]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


if __name__ == "__main__":
    serve()
