"""Services as real processes for e2e and fault tests: start, wait ready, SIGTERM, SIGKILL.

Each test run passes its own database, broker and topic prefix through the environment, as
`jobline dev` does, so a service here is the same program a deployment runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT = 30.0

MODULES = {
    "gateway": ("jobline_gateway", "JOBLINE_GATEWAY_PORT"),
    "relay": ("jobline_relay", "JOBLINE_RELAY_PORT"),
    "worker": ("jobline_worker", "JOBLINE_WORKER_PORT"),
    "analyzer": ("jobline_analyzer", "JOBLINE_ANALYZER_PORT"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServiceProcess:
    """One service process; its output goes to ``log_path`` for post-mortems."""

    kind: str
    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServiceProcess:
        module, port_var = MODULES[self.kind]
        env = {**os.environ, **self.env, port_var: str(self.port), "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *self.args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.kind} not ready after {timeout}s:\n{self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the clean shutdown path. Returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing cleaned up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Stack:
    """Starts services against one database, broker and prefix; stops them all at the end."""

    def __init__(self, base_env: Mapping[str, str], log_dir: Path) -> None:
        self.base_env = dict(base_env)
        self.log_dir = log_dir
        self.services: list[ServiceProcess] = []

    def start(
        self,
        kind: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        n = sum(1 for s in self.services if s.kind == kind)
        service = ServiceProcess(
            kind=kind,
            env={**self.base_env, **(env or {})},
            log_path=self.log_dir / f"{kind}-{n}.log",
            args=args,
        )
        self.services.append(service)
        return service.start(wait=wait)

    def stop_all(self) -> None:
        for service in self.services:
            if service.alive:
                with suppress(subprocess.TimeoutExpired):
                    service.terminate(timeout=15)
        for service in self.services:
            service.kill()


@contextmanager
def running_stack(base_env: Mapping[str, str], log_dir: Path) -> Iterator[Stack]:
    stack = Stack(base_env, log_dir)
    try:
        yield stack
    finally:
        stack.stop_all()
