"""``jobline jobs``: submit, get, list, watch, cancel, redrive and attempts, through the
gateway's API."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from jobline.api import JobOut, JobState
from jobline.api.unique import UniquePolicy
from jobline.cli.output import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonFlag,
    echo_json,
    fail,
    gateway,
    json_object,
    when,
)
from jobline.client import Client, JobEvent, WaitTimeout
from jobline.client.sync import job_fields, unique_fields

app = typer.Typer(
    help="Submit, inspect, watch, cancel and redrive jobs (JOBLINE_GATEWAY_URL, JOBLINE_API_KEY).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

JobId = Annotated[str, typer.Argument(help="The job's id.")]
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, option: str, now: datetime) -> datetime:
    """ISO 8601 (a time without offset is UTC), or a duration ago: ``90s``, ``15m``, ``2h``,
    ``7d``."""
    if match := _RELATIVE.match(text.strip()):
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        message = f"{option}: not a time or a duration like 15m: {text!r}"
        raise fail(message, ExitCode.USAGE) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def job_line(job: JobOut) -> str:
    error = job.last_error
    tail = f"  {error.error_class}: {error.message[:60]}" if error else ""
    return (
        f"{job.id}  {job.status.value:<9} {job.type:<20} {job.queue:<10} "
        f"{job.attempt}/{job.max_attempts}  {when(job.timings.created_at)}{tail}"
    )


def _summary(job: JobOut) -> str:
    lines = [
        f"id        {job.id}",
        f"type      {job.type}   queue {job.queue}   priority {job.priority}",
        f"status    {job.status.value}   attempt {job.attempt}/{job.max_attempts}",
        f"created   {when(job.timings.created_at)}   due {when(job.timings.scheduled_for)}",
        f"started   {when(job.timings.started_at)}   finished {when(job.timings.finished_at)}",
    ]
    if job.progress is not None:
        message = f" {job.progress.message}" if job.progress.message else ""
        lines.append(f"progress  {job.progress.fraction:.0%}{message}")
    if job.last_error is not None:
        e = job.last_error
        lines.append(f"error     attempt {e.attempt}: {e.error_class}: {e.message}")
    if job.unique_key is not None:
        lines.append(f"unique    {job.unique_key}")
    if job.result is not None:
        lines.append(f"result    {json.dumps(job.result)}")
    lines.append(f"payload   {json.dumps(job.payload)}")
    return "\n".join(lines)


@app.command("submit")
def submit(
    job_type: Annotated[str, typer.Argument(help="The job type (handler name).")],
    *,
    payload: Annotated[str, typer.Option(help="The payload, a JSON object.")] = "{}",
    queue: Annotated[str | None, typer.Option(help="The queue.")] = None,
    priority: Annotated[
        int | None, typer.Option(help="0-9, higher starts first.", min=0, max=9)
    ] = None,
    delay: Annotated[float | None, typer.Option(help="Run no sooner than in this many s.")] = None,
    run_at: Annotated[str | None, typer.Option(help="Run no sooner than (ISO 8601).")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="The attempt budget.")] = None,
    timeout: Annotated[float | None, typer.Option(help="The job's timeout in seconds.")] = None,
    metadata: Annotated[str | None, typer.Option(help="Metadata, a JSON object.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Idempotency-Key (default: a new one per call).")
    ] = None,
    unique_key: Annotated[
        str | None, typer.Option(help="At most one unfinished job with this key.")
    ] = None,
    unique_policy: Annotated[
        UniquePolicy,
        typer.Option(help="With --unique-key: what a duplicate gets.", case_sensitive=False),
    ] = UniquePolicy.REJECT,
    unique_window: Annotated[
        float | None, typer.Option(help="With --unique-policy debounce: the window in s.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Watch the job until it ends.")] = False,
    wait_timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many s.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a job; prints its id (or, with --wait, watches it like `jobs watch`).

    With --unique-key and a duplicate: reject exits with a conflict naming the job that holds
    the key; debounce prints that job's id.
    """
    if unique_key is None and (unique_window is not None or unique_policy != UniquePolicy.REJECT):
        raise fail("--unique-policy and --unique-window need --unique-key", ExitCode.USAGE)
    job = job_fields(
        job_type,
        json_object(payload, "--payload"),
        queue=queue,
        priority=priority,
        delay_seconds=delay,
        run_at=parse_when(run_at, "--run-at", datetime.now(UTC)) if run_at else None,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
        metadata=json_object(metadata, "--metadata") if metadata else None,
        unique=unique_fields(unique_key, unique_policy.value, unique_window),
    )
    with gateway() as client:
        submitted = client.submit_job(job, idempotency_key=idempotency_key)
        if wait:
            _watch(client, str(submitted.id), wait_timeout, as_json)
            return
    if as_json:
        echo_json(submitted)
    else:
        typer.echo(str(submitted.id))


@app.command("batch")
def batch(
    source: Annotated[
        Path, typer.Argument(help="A JSON array of jobs, or one job per line; - for stdin.")
    ],
    chunk_size: Annotated[int, typer.Option(help="Jobs per request (1-1000).")] = 1000,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Idempotency-Key; repeat it to resume a batch.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit many jobs, in all-or-nothing chunks; prints their ids in order."""
    text = sys.stdin.read() if str(source) == "-" else _read(source)
    try:
        stripped = text.strip()
        jobs = (
            json.loads(stripped)
            if stripped.startswith("[")
            else [json.loads(line) for line in stripped.splitlines() if line.strip()]
        )
    except ValueError as exc:
        raise fail(f"{source}: not JSON: {exc}", ExitCode.USAGE) from None
    if not jobs or not all(isinstance(j, dict) for j in jobs):
        raise fail(f"{source}: expected JSON objects, one per job", ExitCode.USAGE)
    if not 1 <= chunk_size <= 1000:
        raise fail("--chunk-size must be 1..1000", ExitCode.USAGE)
    with gateway() as client:
        accepted = client.submit_batch(jobs, chunk_size=chunk_size, idempotency_key=idempotency_key)
    if as_json:
        echo_json(accepted)
    else:
        for job in accepted:
            typer.echo(str(job.id))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE) from None


@app.command("get")
def get(job_id: JobId, as_json: JsonFlag = False) -> None:
    """A job: status, attempts, timings, progress, last error, result."""
    with gateway() as client:
        job = client.get_job(job_id)
    if as_json:
        echo_json(job)
    else:
        typer.echo(_summary(job))


@app.command("list")
def list_jobs(
    *,
    status: Annotated[JobState | None, typer.Option(help="Only jobs in this state.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="Only this job type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after: ISO 8601 or a duration (15m, 2h).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Created before: as --since.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every match (no --limit).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The tenant's jobs, newest first: id, status, type, queue, attempts, created, error."""
    now = datetime.now(UTC)
    with gateway() as client:
        found: list[JobOut] = []
        for job in client.iter_jobs(
            status=status,
            type=job_type,
            queue=queue,
            created_after=parse_when(since, "--since", now) if since else None,
            created_before=parse_when(until, "--until", now) if until else None,
            page_size=None if all_pages else min(max(limit, 1), 500),
        ):
            if not all_pages and len(found) >= limit:
                break
            found.append(job)
    if as_json:
        echo_json(found)
        return
    for job in found:
        typer.echo(job_line(job))


@app.command("watch")
def watch(
    job_id: JobId,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many s.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Follow a job until it ends: state changes as lines, progress as a live bar. Exits 0
    if it succeeded, 5 if it ended dead or cancelled, 6 on --timeout."""
    with gateway() as client:
        _watch(client, job_id, timeout, as_json)


@app.command("cancel")
def cancel(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Cancel a job: at once unless running, where the worker is asked to stop it."""
    with gateway() as client:
        job = client.cancel_job(job_id)
    if as_json:
        echo_json(job)
    elif job.status is JobState.CANCELLED:
        typer.echo(f"cancelled {job.id}")
    else:
        typer.echo(f"cancel requested for {job.id} ({job.status.value})")


@app.command("redrive")
def redrive(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Send a dead job back to its queue with a fresh attempt budget."""
    with gateway() as client:
        job = client.redrive_job(job_id)
    if as_json:
        echo_json(job)
    else:
        typer.echo(f"redriven {job.id} ({job.status.value})")


@app.command("attempts")
def attempts(job_id: JobId, as_json: JsonFlag = False) -> None:
    """Each attempt of a job: number, worker, start, end, outcome, error."""
    with gateway() as client:
        found = client.attempts(job_id)
    if as_json:
        echo_json(found)
        return
    for a in found:
        error = f"  {a.error.get('class') or a.error.get('error_class')}: " if a.error else ""
        message = str(a.error.get("message", ""))[:80] if a.error else ""
        typer.echo(
            f"#{a.attempt}  {a.outcome or 'running':<13} {when(a.started_at)} -> "
            f"{when(a.finished_at)}  {a.worker_id}{error}{message}"
        )


# --- watching -----------------------------------------------------------------------------


def event_json(event: JobEvent) -> dict[str, Any]:
    job = event.job
    return {
        "kind": event.kind,
        "job_id": str(job.id),
        "status": job.status.value,
        "previous_status": event.previous_status.value if event.previous_status else None,
        "attempt": job.attempt,
        "progress": event.progress.model_dump(mode="json") if event.progress else None,
        "observed_at": datetime.now(UTC).isoformat(),
        "job": job.model_dump(mode="json"),
    }


def change_line(event: JobEvent) -> str:
    job = event.job
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    if event.kind == "progress" and event.progress is not None:
        message = f" {event.progress.message}" if event.progress.message else ""
        return f"{stamp} progress {event.progress.fraction:.0%}{message}"
    move = (
        f"{event.previous_status.value} -> {job.status.value}"
        if event.previous_status
        else job.status.value
    )
    text = f"{stamp} {move}"
    if job.attempt:
        text += f" (attempt {job.attempt}/{job.max_attempts})"
    if job.status is JobState.SUCCEEDED and job.result is not None:
        text += f"  result {json.dumps(job.result)[:120]}"
    elif job.status in (JobState.DEAD, JobState.RETRYING) and job.last_error is not None:
        text += f"  {job.last_error.error_class}: {job.last_error.message[:120]}"
    return text


def _watch(client: Client, job_id: str, timeout: float | None, as_json: bool) -> None:
    console = Console()
    last: JobOut | None = None
    try:
        if as_json or not console.is_terminal:
            for event in client.job_events(job_id, timeout=timeout):
                last = event.job
                if as_json:
                    echo_json(event_json(event), lines=True)
                else:
                    typer.echo(change_line(event))
        else:
            last = _watch_live(client, job_id, timeout, console)
    except WaitTimeout as exc:
        raise fail(str(exc), ExitCode.TIMEOUT) from None
    assert last is not None
    if last.status is not JobState.SUCCEEDED:
        raise typer.Exit(int(ExitCode.JOB_FAILED))


def _watch_live(client: Client, job_id: str, timeout: float | None, console: Console) -> JobOut:
    """A bar that follows the handler's progress reports; state changes print above it."""
    last: JobOut | None = None
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(job_id[:8], total=None)
        for event in client.job_events(job_id, timeout=timeout):
            last = event.job
            if event.kind != "progress":
                bar.console.print(change_line(event), highlight=False)
            description = f"{job_id[:8]} {last.status.value}"
            if event.progress is not None:
                if event.progress.message:
                    description += f" {event.progress.message}"
                bar.update(task, total=1.0, completed=event.progress.fraction)
            if last.status is JobState.SUCCEEDED:
                bar.update(task, total=1.0, completed=1.0)
            bar.update(task, description=description)
    assert last is not None
    return last
