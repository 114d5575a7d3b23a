"""``jobline schedules``: recurring jobs through the gateway (by id or by name)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jobline.api import ScheduleOut
from jobline.cli.jobs import job_line
from jobline.cli.output import (
    EXIT_CODES_HELP,
    ExitCode,
    JsonFlag,
    echo_json,
    fail,
    gateway,
    json_object,
)

app = typer.Typer(
    help="Recurring schedules, through the gateway (JOBLINE_GATEWAY_URL, JOBLINE_API_KEY).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

ScheduleRef = Annotated[str, typer.Argument(help="The schedule's id or name.")]
Cron = Annotated[
    str | None, typer.Option(help="Cron expression: 5 fields, or 6 with seconds first.")
]
Every = Annotated[int | None, typer.Option(help="Fire every this many seconds (not --cron).")]
Payload = Annotated[str | None, typer.Option(help="The job's payload, a JSON object.")]
Queue = Annotated[str | None, typer.Option(help="The job's queue.")]
MaxAttempts = Annotated[int | None, typer.Option(help="The job's attempt budget.")]
Timeout = Annotated[float | None, typer.Option(help="The job's timeout in seconds.")]
Misfire = Annotated[str | None, typer.Option(help="Missed times: skip, fire_once or catch_up.")]
CatchUp = Annotated[int | None, typer.Option(help="catch_up: at most this many.")]
Overlap = Annotated[str | None, typer.Option(help="allow or skip_if_running.")]
StartAt = Annotated[str | None, typer.Option(help="No fire before (ISO 8601).")]
EndAt = Annotated[str | None, typer.Option(help="No fire after (ISO 8601).")]


def _timing(schedule: ScheduleOut) -> str:
    if schedule.cron:
        return f"cron '{schedule.cron}' {schedule.timezone}"
    return f"every {schedule.interval_seconds}s"


def _line(s: ScheduleOut) -> str:
    state = "paused" if s.paused else "active"
    next_fire = s["next_fire_at"] or "-"
    return f"{s.id}  {s.name:<24} {state:<7} {_timing(s):<36} next {next_fire}  job {s.job.type}"


def _policies(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Unique per tenant.")],
    *,
    job_type: Annotated[str, typer.Option("--type", help="The job type (handler name).")],
    cron: Cron = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron.")] = "UTC",
    every: Every = None,
    payload: Annotated[str, typer.Option(help="The job's payload, a JSON object.")] = "{}",
    queue: Queue = None,
    max_attempts: MaxAttempts = None,
    timeout: Timeout = None,
    misfire: Misfire = None,
    catch_up_limit: CatchUp = None,
    overlap: Overlap = None,
    start_at: StartAt = None,
    end_at: EndAt = None,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a schedule: --cron (with --timezone) or --every SECONDS, and the job's --type."""
    job = {
        "type": job_type,
        "payload": json_object(payload, "--payload"),
        **_policies(queue=queue, max_attempts=max_attempts, timeout_seconds=timeout),
    }
    body: dict[str, Any] = {"name": name, "job": job, "paused": paused}
    if cron is not None:
        body["cron"] = cron
        body["timezone"] = timezone
    if every is not None:
        body["interval_seconds"] = every
    body |= _policies(
        misfire_policy=misfire,
        catch_up_limit=catch_up_limit,
        overlap_policy=overlap,
        start_at=start_at,
        end_at=end_at,
    )
    with gateway() as client:
        created = client.create_schedule(body)
    if as_json:
        echo_json(created)
        return
    typer.echo(str(created.id))
    typer.echo(
        f"schedule {created.name!r}: {_timing(created)}, next fire {created['next_fire_at']}",
        err=True,
    )


@app.command("list")
def list_schedules(as_json: JsonFlag = False) -> None:
    """The tenant's schedules: id, name, state, timing, next fire, job type."""
    with gateway() as client:
        found = list(client.iter_schedules())
    if as_json:
        echo_json(found)
        return
    for schedule in found:
        typer.echo(_line(schedule))


@app.command("get")
def get(schedule: ScheduleRef, as_json: JsonFlag = False) -> None:
    """One schedule: timing, policies, job template, next and last fire."""
    with gateway() as client:
        found = client.find_schedule(schedule)
    if as_json:
        echo_json(found)
        return
    typer.echo(_line(found))
    typer.echo(
        f"  misfire {found.misfire_policy.value} (catch-up limit {found.catch_up_limit}), "
        f"overlap {found.overlap_policy.value}, last fired {found['last_fired_at'] or '-'}"
    )
    typer.echo(f"  job {found.job.model_dump_json(exclude_none=True)}")


@app.command("update")
def update(
    schedule: ScheduleRef,
    *,
    rename: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    cron: Cron = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of the cron.")] = None,
    every: Every = None,
    job_type: Annotated[str | None, typer.Option("--type", help="The job type.")] = None,
    payload: Payload = None,
    queue: Queue = None,
    max_attempts: MaxAttempts = None,
    timeout: Timeout = None,
    misfire: Misfire = None,
    catch_up_limit: CatchUp = None,
    overlap: Overlap = None,
    start_at: StartAt = None,
    end_at: EndAt = None,
    no_start: Annotated[bool, typer.Option(help="Remove the start bound.")] = False,
    no_end: Annotated[bool, typer.Option(help="Remove the end bound.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Change a schedule; what is not given stays. A new --cron or --every replaces the
    other and plans afresh from now; job options change the template's fields."""
    if cron is not None and every is not None:
        raise fail("give --cron or --every, not both", ExitCode.USAGE)
    changes: dict[str, Any] = _policies(
        name=rename,
        cron=cron,
        timezone=timezone,
        interval_seconds=every,
        misfire_policy=misfire,
        catch_up_limit=catch_up_limit,
        overlap_policy=overlap,
        start_at=start_at,
        end_at=end_at,
    )
    if no_start:
        changes["start_at"] = None
    if no_end:
        changes["end_at"] = None
    job_changes = _policies(
        type=job_type,
        payload=json_object(payload, "--payload") if payload is not None else None,
        queue=queue,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
    )
    if not changes and not job_changes:
        raise fail("nothing to change", ExitCode.USAGE)
    with gateway() as client:
        found = client.find_schedule(schedule)
        if job_changes:
            # The API replaces the template whole: send the current one with the changes.
            changes["job"] = found.job.model_dump(mode="json", exclude_none=True) | job_changes
        updated = client.update_schedule(found.id, changes)
    if as_json:
        echo_json(updated)
    else:
        typer.echo(_line(updated))


def _action(id_or_name: str, action: str) -> ScheduleOut:
    with gateway() as client:
        schedule = client.find_schedule(id_or_name)
        result: ScheduleOut | None = getattr(client, f"{action}_schedule")(schedule.id)
    return result or schedule


@app.command("pause")
def pause(schedule: ScheduleRef, as_json: JsonFlag = False) -> None:
    """Stop firing a schedule (its pending fire time is kept for resume)."""
    paused = _action(schedule, "pause")
    if as_json:
        echo_json(paused)
    else:
        typer.echo(f"paused {paused.name} ({paused.id})")


@app.command("resume")
def resume(schedule: ScheduleRef, as_json: JsonFlag = False) -> None:
    """Fire again from now; times missed while paused run as the misfire policy says."""
    resumed = _action(schedule, "resume")
    if as_json:
        echo_json(resumed)
    else:
        typer.echo(f"resumed {resumed.name} ({resumed.id}); next fire {resumed['next_fire_at']}")


@app.command("delete")
def delete(schedule: ScheduleRef, as_json: JsonFlag = False) -> None:
    """Delete a schedule; the jobs it created stay."""
    deleted = _action(schedule, "delete")
    if as_json:
        echo_json({"deleted": str(deleted.id), "name": deleted.name})
    else:
        typer.echo(f"deleted {deleted.name} ({deleted.id})")


@app.command("next")
def next_fires(
    schedule: ScheduleRef,
    count: Annotated[int, typer.Option(help="How many fire times.")] = 5,
    after: Annotated[str | None, typer.Option(help="After this time (ISO 8601).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The next fire times of a schedule, in its time zone and in UTC."""
    with gateway() as client:
        found = client.find_schedule(schedule)
        preview = client.next_fires(found.id, count, after)
    if as_json:
        echo_json(preview)
        return
    for fire in preview["fires"]:
        typer.echo(f"{fire['local']}  ({preview.timezone})  {fire['utc']}")


@app.command("jobs")
def jobs(
    schedule: ScheduleRef,
    limit: Annotated[int, typer.Option(help="At most this many (newest fire first).")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The jobs a schedule created, newest fire time first."""
    with gateway() as client:
        found_schedule = client.find_schedule(schedule)
        found = []
        for job in client.iter_schedule_jobs(found_schedule.id, page_size=min(limit, 500)):
            found.append(job)
            if len(found) >= limit:
                break
    if as_json:
        echo_json(found)
        return
    for job in found:
        typer.echo(f"{job['fire_time']}  {job_line(job)}")
