"""`jobline dev` as a newcomer runs it: everything up, keys usable, Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.stack import free_port

JOBLINE = str(Path(sys.executable).with_name("jobline"))
PORT_VARIABLES = {
    "gateway": "JOBLINE_GATEWAY_PORT",
    "outbox-relay": "JOBLINE_RELAY_PORT",
    "worker": "JOBLINE_WORKER_PORT",
    "ai-analyzer": "JOBLINE_ANALYZER_PORT",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLINE_")}
    env.update(extra)
    return env


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


class Output:
    """Collects a process's output on a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, proc: subprocess.Popen[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if text in line:
                    return line
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not printed; output:\n{''.join(self.lines[-60:])}")


def test_dev_stack_starts_serves_and_stops_cleanly(tmp_path: Path) -> None:
    ports = {name: free_port() for name in PORT_VARIABLES}
    pg_port, broker_port = free_port(), free_port()
    env = clean_env(
        JOBLINE_DATA_DIR=str(tmp_path / ".jobline"),
        JOBLINE_DEV_PG_PORT=str(pg_port),
        JOBLINE_DEV_BROKER_PORT=str(broker_port),
        JOBLINE_TOPIC_PREFIX=f"devtest{os.getpid()}",
        **{PORT_VARIABLES[name]: str(port) for name, port in ports.items()},
    )
    proc = subprocess.Popen(
        [JOBLINE, "dev"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(proc)
    try:
        key_line = output.wait_for("dev API key", proc, timeout=90)
        key = key_line.split()[-1]
        assert key.startswith("jl_")
        assert (tmp_path / ".jobline" / "dev-api-key").read_text().strip() == key

        for name, port in ports.items():
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            assert status == 200, (name, body)
        status, metrics = get(f"http://127.0.0.1:{ports['gateway']}/metrics")
        assert status == 200
        assert "# TYPE process_resident_memory_bytes gauge" in metrics

        # The CLI finds the running stack's database without any flag.
        created = subprocess.run(
            [JOBLINE, "keys", "create", "--tenant", "acme", "--scopes", "jobs:read"],
            env=clean_env(JOBLINE_DATA_DIR=str(tmp_path / ".jobline")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip().startswith("jl_")
        migrated = subprocess.run(
            [JOBLINE, "migrate"],
            env=clean_env(JOBLINE_DATA_DIR=str(tmp_path / ".jobline")),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr

        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = proc.wait(60)
    assert code == 0, "".join(output.lines[-40:])
    assert "nothing left running" in "".join(output.lines)
    still_alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert still_alive == []
    leftover = [p for p in [*ports.values(), pg_port, broker_port] if port_open(p)]
    assert leftover == []


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("JOBLINE_DATABASE_URL", "postgresql://postgres@127.0.0.1:{port}/jobline", "PostgreSQL"),
        ("JOBLINE_KAFKA_BOOTSTRAP", "127.0.0.1:{port}", "broker"),
    ],
)
def test_unreachable_dependency_stops_dev_with_one_clear_line(
    tmp_path: Path, variable: str, value: str, expected: str, database_url: str
) -> None:
    closed = free_port()
    env = clean_env(JOBLINE_DATA_DIR=str(tmp_path / ".jobline"))
    if variable == "JOBLINE_KAFKA_BOOTSTRAP":
        env["JOBLINE_DATABASE_URL"] = database_url  # a working database, a dead broker
    env[variable] = value.format(port=closed)
    result = subprocess.run(
        [JOBLINE, "dev"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("error: ")
    assert expected in errors[0]
    assert f"127.0.0.1:{closed}" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
