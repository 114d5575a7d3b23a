"""``jobline workflows``: submit a graph of jobs, list them, show its nodes, cancel it, redrive a
node."""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from jobline.api import WorkflowOut
from jobline.cli.output import EXIT_CODES_HELP, ExitCode, JsonFlag, echo_json, fail, gateway, when

app = typer.Typer(
    help="Workflows: jobs with refs and depends_on, run as a graph (chains, fan-out/fan-in).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

WorkflowId = Annotated[str, typer.Argument(help="The workflow's id.")]


def _print(workflow: WorkflowOut) -> None:
    typer.echo(
        f"workflow {workflow.id}  {workflow.status.value}  nodes {workflow.nodes_total} "
        f"(unfinished {workflow.nodes_unfinished}, failed {workflow.nodes_failed})  "
        f"created {when(workflow.timings.created_at)}  "
        f"finished {when(workflow.timings.finished_at)}"
    )
    for node in workflow.nodes:
        parents = f" <- {','.join(node.depends_on)}" if node.depends_on else ""
        reason = f"  ({node.cancel_reason})" if node.cancel_reason else ""
        typer.echo(
            f"  {node.ref:<20} {node.status.value:<10} {node.type:<16} {node.job_id}"
            f"{parents}{reason}"
        )


def _body(source: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(source) == "-" else source.read_text()
    except OSError as exc:
        raise fail(f"cannot read {source}: {exc.strerror}", ExitCode.USAGE) from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise fail(f"{source}: not JSON: {exc}", ExitCode.USAGE) from None
    if isinstance(value, list):
        value = {"jobs": value}
    if not isinstance(value, dict) or not isinstance(value.get("jobs"), list):
        raise fail(f'{source}: expected {{"jobs": [...]}} or a JSON array', ExitCode.USAGE)
    return value


@app.command("submit")
def submit(
    source: Annotated[
        Path,
        typer.Argument(
            help='A workflow ({"jobs": [...], "on_failure": ...}) or a JSON array of jobs, '
            "each with ref, type, payload and depends_on; - for stdin."
        ),
    ],
    on_failure: Annotated[
        str | None, typer.Option(help="cancel (the default) or continue.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until it ends; show its nodes.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Submit a workflow; prints its id (exit 5 with --wait if it does not succeed)."""
    body = _body(source)
    if on_failure is not None:
        body["on_failure"] = on_failure
    with gateway() as client:
        workflow = client.submit_workflow(
            body["jobs"],
            on_failure=body.get("on_failure"),
            metadata=body.get("metadata"),
            idempotency_key=idempotency_key,
        )
        if wait:
            delay = 0.1
            while workflow.status.value == "running":
                time.sleep(delay)
                delay = min(delay * 1.5, 2.0)
                workflow = client.get_workflow(workflow.id)
    if as_json:
        echo_json(workflow)
    elif wait:
        _print(workflow)
    else:
        typer.echo(str(workflow.id))
    if wait and workflow.status.value != "succeeded":
        raise typer.Exit(int(ExitCode.JOB_FAILED))


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="running, succeeded, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """The tenant's workflows, newest first: state and node counts by state."""
    with gateway() as client:
        found = list(itertools.islice(client.iter_workflows(status=status, page_size=limit), limit))
    if as_json:
        echo_json(found)
        return
    for w in found:
        counts = " ".join(f"{state} {n}" for state, n in sorted(w.nodes_by_status.items()))
        typer.echo(
            f"{w.id}  {w.status.value:<9}  nodes {w.nodes_total:<5} ({counts})  "
            f"created {when(w.timings.created_at)}  finished {when(w.timings.finished_at)}"
        )


@app.command("show")
def show(workflow_id: WorkflowId, as_json: JsonFlag = False) -> None:
    """A workflow's state and each node's state."""
    with gateway() as client:
        workflow = client.get_workflow(workflow_id)
    if as_json:
        echo_json(workflow)
    else:
        _print(workflow)


@app.command("cancel")
def cancel(workflow_id: WorkflowId, as_json: JsonFlag = False) -> None:
    """Cancel every unfinished node of a workflow."""
    with gateway() as client:
        workflow = client.cancel_workflow(workflow_id)
    if as_json:
        echo_json(workflow)
    else:
        _print(workflow)


@app.command("redrive")
def redrive(
    workflow_id: WorkflowId,
    ref: Annotated[str, typer.Argument(help="The dead node's ref.")],
    as_json: JsonFlag = False,
) -> None:
    """Send a dead node back; the dependants its failure cancelled wait again."""
    with gateway() as client:
        workflow = client.redrive_workflow_node(workflow_id, ref)
    if as_json:
        echo_json(workflow)
    else:
        _print(workflow)
