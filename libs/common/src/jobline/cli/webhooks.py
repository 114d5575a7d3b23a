"""``jobline webhooks``: webhook endpoints and their delivery log, through the gateway (the
calling key needs the ``webhooks:manage`` scope)."""

from __future__ import annotations

from typing import Annotated

import typer

from jobline.api import DeliveryOut, WebhookOut
from jobline.cli.output import EXIT_CODES_HELP, ExitCode, JsonFlag, echo_json, fail, gateway, when

app = typer.Typer(
    help="Webhook endpoints: lifecycle events POSTed to your URL, signed per Standard "
    "Webhooks (the calling key needs webhooks:manage).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

WebhookId = Annotated[str, typer.Argument(help="The endpoint's id.")]
EVENTS_HELP = (
    "Comma-separated event types: jobline.job.<state> (scheduled, queued, started, retrying, "
    "succeeded, dead, cancelled), jobline.job.* or *."
)


def _line(w: WebhookOut) -> str:
    state = "enabled" if w.enabled else "disabled"
    return f"{w.id}  {state:<8} {','.join(w.event_types)}  {w.url}"


def _delivery_line(d: DeliveryOut) -> str:
    last = f"HTTP {d.last_status_code}" if d.last_status_code else (d.last_error or "-")
    return (
        f"{d.id}  {d.status.value:<9} attempts {d.attempts}  {d.event_type:<22} "
        f"{d.event_id}  {when(d.created_at)}  {last}"
    )


def _types(text: str) -> list[str]:
    types = [t.strip() for t in text.split(",") if t.strip()]
    if not types:
        raise fail("--events needs at least one event type", ExitCode.USAGE)
    return types


@app.command("create")
def create(
    url: Annotated[str, typer.Argument(help="Where deliveries are POSTed (http or https).")],
    events: Annotated[str, typer.Option(help=EVENTS_HELP)] = "*",
    description: Annotated[str | None, typer.Option(help="A note for people.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an endpoint and print its signing secret once (on stdout)."""
    with gateway() as client:
        created = client.create_webhook(url, _types(events), description=description)
    if as_json:
        echo_json(created)
        return
    typer.echo(created.secret)
    typer.echo(
        f"webhook {created.id} -> {created.url} ({', '.join(created.event_types)}); "
        "the secret above is shown only once",
        err=True,
    )


@app.command("list")
def list_webhooks(as_json: JsonFlag = False) -> None:
    """List the tenant's endpoints (never their secrets)."""
    with gateway() as client:
        found = list(client.iter_webhooks())
    if as_json:
        echo_json(found)
        return
    for webhook in found:
        typer.echo(_line(webhook))


@app.command("get")
def get(webhook: WebhookId, as_json: JsonFlag = False) -> None:
    """One endpoint: URL, event types, and whether (and why not) it is enabled."""
    with gateway() as client:
        found = client.get_webhook(webhook)
    if as_json:
        echo_json(found)
        return
    typer.echo(_line(found))
    if found.disabled_reason:
        typer.echo(f"disabled: {found.disabled_reason}")


@app.command("update")
def update(
    webhook: WebhookId,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    events: Annotated[str | None, typer.Option(help=EVENTS_HELP)] = None,
    enable: Annotated[
        bool | None,
        typer.Option("--enable/--disable", help="Enable (sends what was held) or disable."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an endpoint's URL or event types, or enable or disable it."""
    changes: dict[str, object] = {}
    if url is not None:
        changes["url"] = url
    if events is not None:
        changes["event_types"] = _types(events)
    if enable is not None:
        changes["enabled"] = enable
    with gateway() as client:
        updated = client.update_webhook(webhook, changes)
    if as_json:
        echo_json(updated)
    else:
        typer.echo(_line(updated))


@app.command("rotate-secret")
def rotate_secret(webhook: WebhookId, as_json: JsonFlag = False) -> None:
    """A new signing secret, printed once; the old one signs too for a grace period."""
    with gateway() as client:
        rotated = client.rotate_webhook_secret(webhook)
    if as_json:
        echo_json(rotated)
        return
    typer.echo(rotated.secret)
    typer.echo(
        f"the previous secret also signs until {when(rotated.previous_secret_expires_at)}",
        err=True,
    )


@app.command("deliveries")
def deliveries(
    webhook: WebhookId,
    status: Annotated[
        str | None, typer.Option(help="Only pending, succeeded or failed deliveries.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The endpoint's delivery log, newest first."""
    with gateway() as client:
        found = []
        for delivery in client.iter_webhook_deliveries(webhook, status=status):
            found.append(delivery)
            if len(found) >= limit:
                break
    if as_json:
        echo_json(found)
        return
    for delivery in found:
        typer.echo(_delivery_line(delivery))


@app.command("replay")
def replay(
    webhook: WebhookId,
    delivery: Annotated[str, typer.Argument(help="The delivery's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Send a delivery again, with a fresh series of attempts."""
    with gateway() as client:
        replayed = client.replay_webhook_delivery(webhook, delivery)
    if as_json:
        echo_json(replayed)
    else:
        typer.echo(f"replaying {replayed.id} ({replayed.event_type} {replayed.event_id})")


@app.command("delete")
def delete(webhook: WebhookId, as_json: JsonFlag = False) -> None:
    """Delete an endpoint and its delivery log."""
    with gateway() as client:
        client.delete_webhook(webhook)
    if as_json:
        echo_json({"deleted": webhook})
    else:
        typer.echo(f"deleted {webhook}")
