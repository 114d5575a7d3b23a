"""``jobline limits``: a tenant's own concurrency and rate limits of a job type, through the
gateway (reading needs ``jobs:read``; changing, ``policies:write``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jobline.api.typelimits import LimitsOut
from jobline.cli.output import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonFlag,
    echo_json,
    fail,
    gateway,
    when,
)

app = typer.Typer(
    help="Your tenant's own limits on starting jobs of a type: they replace the limits the "
    "worker's handler declares, for your jobs only.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

JobType = Annotated[str, typer.Argument(help="The job type.")]


def _line(limits: LimitsOut) -> str:
    parts = []
    if limits.concurrency is not None:
        per = f" per {limits.concurrency.key}" if limits.concurrency.key else ""
        parts.append(f"at most {limits.concurrency.max} running{per}")
    if limits.rate is not None:
        per = f" per {limits.rate.key}" if limits.rate.key else ""
        parts.append(f"{limits.rate.limit} starts{per}")
    said = "; ".join(parts) or "no limits of its own (the handler's are lifted)"
    return f"{limits.type}: {said} (since {when(limits.updated_at)})"


@app.command("get")
def get(job_type: JobType, as_json: JsonFlag = False) -> None:
    """Show your limits of a job type (a 404, exit 1, if you set none: the handler's apply)."""
    with gateway() as client:
        limits = client.get_limits(job_type)
    if as_json:
        echo_json(limits)
    else:
        typer.echo(_line(limits))


@app.command("set")
def set_limits(  # noqa: PLR0917 - typer passes each option by name
    job_type: JobType,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="At most this many running at once.")
    ] = None,
    concurrency_key: Annotated[
        str | None, typer.Option(help="A payload field: count per value of it.")
    ] = None,
    rate: Annotated[
        str | None, typer.Option(help="Starts per period: 10/s, 100/min, 5/10s, 1000/h.")
    ] = None,
    rate_key: Annotated[str | None, typer.Option(help="A payload field: rate per value.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set your limits of a job type (none given: your jobs of it start unlimited)."""
    if concurrency_key is not None and concurrency is None:
        raise fail("--concurrency-key needs --concurrency", ExitCode.USAGE)
    if rate_key is not None and rate is None:
        raise fail("--rate-key needs --rate", ExitCode.USAGE)
    body: dict[str, Any] = {}
    if concurrency is not None:
        body["concurrency"] = {"max": concurrency, "key": concurrency_key}
    if rate is not None:
        body["rate"] = {"limit": rate, "key": rate_key}
    with gateway() as client:
        limits = client.set_limits(job_type, body)
    if as_json:
        echo_json(limits)
    else:
        typer.echo(_line(limits))


@app.command("delete")
def delete(job_type: JobType) -> None:
    """Remove your limits of a job type: the handler's apply again."""
    with gateway() as client:
        client.delete_limits(job_type)
    typer.echo(f"{job_type}: your limits removed; the handler's apply")
