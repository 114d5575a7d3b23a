"""``jobline dlq``: the tenant's dead jobs (its dead-letter queue) through the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from jobline.api import JobOut
from jobline.cli.jobs import job_line
from jobline.cli.output import EXIT_CODES_HELP, ExitCode, JsonFlag, echo_json, fail, gateway, when
from jobline.client import Client, Conflict

app = typer.Typer(
    help="Dead jobs: list, group by error, redrive.", epilog=EXIT_CODES_HELP, no_args_is_help=True
)

JobType = Annotated[str | None, typer.Option("--type", help="Only this job type.")]
Queue = Annotated[str | None, typer.Option(help="Only this queue.")]
ErrorClass = Annotated[str | None, typer.Option(help="Only jobs whose last error has this class.")]


def _dead(
    client: Client, job_type: str | None, queue: str | None, error_class: str | None
) -> list[JobOut]:
    return [
        job
        for job in client.iter_dead_jobs(type=job_type, queue=queue, page_size=500)
        if error_class is None or (job.last_error and job.last_error.error_class == error_class)
    ]


@app.command("list")
def dlq_list(
    job_type: JobType = None,
    queue: Queue = None,
    error_class: ErrorClass = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Dead jobs, newest first, with their last error."""
    with gateway() as client:
        found = []
        for job in client.iter_dead_jobs(type=job_type, queue=queue, page_size=min(limit, 500)):
            if error_class and not (job.last_error and job.last_error.error_class == error_class):
                continue
            found.append(job)
            if len(found) >= limit:
                break
    if as_json:
        echo_json(found)
        return
    for job in found:
        typer.echo(job_line(job))


@app.command("groups")
def dlq_groups(job_type: JobType = None, queue: Queue = None, as_json: JsonFlag = False) -> None:
    """Dead jobs grouped by type, queue and error class, largest first (needs the gateway's
    GET /v1/dlq/groups)."""
    with gateway() as client:
        groups = client.dlq_groups(type=job_type, queue=queue)
    if as_json:
        echo_json(groups)
        return
    for g in groups.groups:
        typer.echo(
            f"{g.count:>7}  {g.type:<20} {g.queue:<10} {g.error_class or '-':<24} "
            f"last {when(g.last_dead_at)}  e.g. {g.sample_job_id}: {(g.sample_message or '')[:60]}"
        )


@app.command("redrive")
def dlq_redrive(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Dead jobs to redrive.")] = None,
    *,
    job_type: JobType = None,
    queue: Queue = None,
    error_class: ErrorClass = None,
    all_dead: Annotated[
        bool, typer.Option("--all", help="Every dead job (when no id or filter is given).")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Only list what would be redriven.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Redrive dead jobs back to their queues: the ids given, or every dead job matching
    --type/--queue/--error-class (or --all). A job no longer dead is skipped."""
    filtered = job_type or queue or error_class
    if job_ids and (filtered or all_dead):
        raise fail("give job ids or filters, not both", ExitCode.USAGE)
    if not job_ids and not filtered and not all_dead:
        raise fail("give job ids, a filter (--type/--queue/--error-class) or --all", ExitCode.USAGE)
    redriven: list[JobOut] = []
    skipped: list[str] = []
    with gateway() as client:
        targets = list(job_ids or [str(j.id) for j in _dead(client, job_type, queue, error_class)])
        if dry_run:
            if as_json:
                echo_json({"would_redrive": targets})
            else:
                typer.echo("\n".join(targets) or "nothing to redrive")
            return
        for job_id in targets:
            try:
                redriven.append(client.redrive_job(job_id))
            except Conflict:
                skipped.append(job_id)
    if as_json:
        echo_json({"redriven": [j.model_dump(mode="json") for j in redriven], "skipped": skipped})
        return
    for job in redriven:
        typer.echo(str(job.id))
    typer.echo(f"redriven {len(redriven)}, skipped {len(skipped)} (no longer dead)", err=True)
