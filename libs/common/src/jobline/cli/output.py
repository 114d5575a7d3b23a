"""What every command shares: exit codes, the client with its failures mapped to them, and
output (a line per item for people, ``--json`` for programs).

Exit codes (also in ``jobline --help`` and the README):

==  =====================================================================================
0   success
1   the gateway refused or failed the request (4xx/5xx: invalid, not found, conflict, ...)
2   usage or configuration: a bad option or value, no API key, no broker address
3   the gateway does not serve the route this command needs (a newer gateway is needed)
4   the gateway (or, for ``events tail``, the broker) could not be reached
5   ``jobs watch`` / ``jobs submit --wait``: the job ended dead or cancelled
6   ``jobs watch`` / ``jobs submit --wait``: the time given ran out before the job ended
130 interrupted (Ctrl-C)
==  =====================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from jobline.client import (
    Client,
    ConfigurationError,
    GatewayError,
    GatewayUnreachable,
    RouteNotServed,
)


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_SERVED = 3
    UNREACHABLE = 4
    JOB_FAILED = 5
    TIMEOUT = 6
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 the gateway refused the request; 2 usage or configuration; "
    "3 the gateway does not serve this route yet; 4 gateway or broker unreachable; "
    "5 the watched job ended dead or cancelled; 6 the wait timed out; 130 interrupted."
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (the API's own shapes).")]


def fail(message: str, code: ExitCode = ExitCode.FAILED) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(int(code))


def exit_code_of(error: GatewayError) -> ExitCode:
    if isinstance(error, RouteNotServed):
        return ExitCode.NOT_SERVED
    if isinstance(error, GatewayUnreachable):
        return ExitCode.UNREACHABLE
    if isinstance(error, ConfigurationError):
        return ExitCode.USAGE
    return ExitCode.FAILED


@contextmanager
def gateway() -> Iterator[Client]:
    """The client (JOBLINE_GATEWAY_URL, JOBLINE_API_KEY or the dev stack's key); a failed
    call is one line on stderr and the exit code of its kind."""
    try:
        client = Client()
    except GatewayError as exc:
        raise fail(str(exc), exit_code_of(exc)) from None
    try:
        yield client
    except GatewayError as exc:
        raise fail(str(exc), exit_code_of(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    finally:
        client.close()


def plain(value: Any) -> Any:
    """A model, or a list of them, as JSON-ready data."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def echo_json(value: Any, *, lines: bool = False) -> None:
    """Pretty JSON, or one compact line (``lines``: for streams of events)."""
    data = plain(value)
    typer.echo(json.dumps(data, separators=(",", ":")) if lines else json.dumps(data, indent=2))


def json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise fail(f"{option} is not valid JSON: {exc}", ExitCode.USAGE) from None
    if not isinstance(value, dict):
        raise fail(f"{option} must be a JSON object", ExitCode.USAGE)
    return value


def when(value: datetime | None) -> str:
    """A timestamp, short: ``2030-01-01 12:00:03Z``."""
    if value is None:
        return "-"
    return value.strftime("%Y-%m-%d %H:%M:%SZ")
