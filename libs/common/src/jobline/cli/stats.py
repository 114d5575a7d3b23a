"""``jobline queues`` and ``jobline stats``: counts by queue and state through the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from jobline.api import JobState
from jobline.cli.output import JsonFlag, echo_json, gateway, when

_STATES = list(JobState)


def queues(as_json: JsonFlag = False) -> None:
    """Each queue: jobs per state and the oldest waiting job (needs GET /v1/queues)."""
    with gateway() as client:
        found = client.queues()
    if as_json:
        echo_json(found)
        return
    typer.echo(f"{'queue':<16}" + "".join(f"{s.value:>11}" for s in _STATES) + "  oldest queued")
    for q in found.queues:
        counts = "".join(f"{q.counts.get(s, 0):>11}" for s in _STATES)
        typer.echo(f"{q.name:<16}{counts}  {when(q.oldest_queued_at)}")


def stats(
    window: Annotated[int, typer.Option(help="Finished jobs within this many s.")] = 3600,
    as_json: JsonFlag = False,
) -> None:
    """Jobs per state now, and finished within the window (needs GET /v1/stats)."""
    with gateway() as client:
        found = client.stats(window_seconds=window)
    if as_json:
        echo_json(found)
        return
    typer.echo("now:      " + "  ".join(f"{s.value} {found.counts.get(s, 0)}" for s in _STATES))
    finished = "  ".join(f"{s.value} {n}" for s, n in found.finished.items())
    typer.echo(f"last {found.window_seconds}s: {finished or 'nothing finished'}")
