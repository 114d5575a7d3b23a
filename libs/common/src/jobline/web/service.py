"""What every service process does: settings, logging, the readiness checks, uvicorn.

Background work (the relay loop, the consumer) runs inside the ASGI app's lifespan, so
uvicorn's SIGTERM handling drains HTTP first and then the lifespan's exit stops the work
cleanly; the process exits 0.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Final, TypeVar

import uvicorn
from pydantic_settings import BaseSettings
from starlette.applications import Starlette

from jobline.broker.kafka import check_broker
from jobline.core.errors import ConfigError
from jobline.observe import logs, tracing
from jobline.pg.db import check_database
from jobline.settings import (
    DatabaseSettings,
    HttpSettings,
    KafkaSettings,
    RuntimeSettings,
    load,
)
from jobline.web import health

S = TypeVar("S", bound=BaseSettings)

# uvicorn's exit code when the server did not start (as uvicorn.run exits).
_STARTUP_FAILURE: Final = 3
_draining = threading.Event()


def draining() -> bool:
    """Whether this process was told to stop (SIGTERM/SIGINT).

    uvicorn waits for every open response before it runs the lifespan's shutdown, so a
    response that never ends by itself (an event stream) must watch this and end.
    """
    return _draining.is_set()


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        _draining.set()
        super().handle_exit(sig, frame)


def dependency_checks(db: DatabaseSettings, kafka: KafkaSettings) -> dict[str, health.Check]:
    """The readiness checks of a service that needs PostgreSQL and the broker."""

    async def database() -> None:
        await check_database(db.plain_url, timeout=db.db_connect_timeout_seconds)

    async def broker() -> None:
        await check_broker(kafka)

    return {"database": database, "broker": broker}


def serve(app: Starlette | str, host: str, port: int, **kwargs: Any) -> None:
    """Run ``app`` until SIGINT/SIGTERM, then exit 0; ``log_config=None`` keeps our logging.

    uvicorn drains HTTP and runs the lifespan's shutdown on SIGTERM, then re-raises the signal
    under the handler that was installed before it started. Under the default handler that
    kills the process (-15) after a clean shutdown, so a no-op handler goes first: a clean
    shutdown returns from here and the process exits 0.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, **kwargs)
    server = _Server(config)
    try:
        with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: Ctrl-C during shutdown
            server.run()
    finally:
        tracing.shutdown()  # the spans of the last moments still go out
    if not server.started:
        sys.exit(_STARTUP_FAILURE)


def start_tracing(name: str) -> None:
    """Traces on when OTEL_TRACES_EXPORTER says so; an exporter that is not installed is a
    configuration error (one line, exit 2), not a silent loss of every span."""
    try:
        tracing.configure(name)
    except tracing.TracingConfigError as exc:
        fail_fast(ConfigError(str(exc)))


def run(
    name: str,
    settings_class: type[S],
    create_app: Callable[[S], Starlette],
    port: Callable[[S], int],
) -> None:
    """A service's ``main()``: settings (or one line and exit 2), logging, HTTP until SIGTERM."""
    try:
        settings = load(settings_class)
    except ConfigError as exc:
        fail_fast(exc)
        return
    if not isinstance(settings, RuntimeSettings) or not isinstance(settings, HttpSettings):
        raise TypeError(f"{settings_class.__name__} must include RuntimeSettings and HttpSettings")
    logs.setup(name, settings.log_level, settings.log_format)
    start_tracing(name)
    serve(create_app(settings), settings.http_host, port(settings))


def fail_fast(exc: ConfigError) -> None:
    """One line on stderr and exit 2: a bad setting is not a traceback wall."""
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(2)
