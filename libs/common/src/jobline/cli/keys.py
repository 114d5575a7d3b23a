"""``jobline keys``: API keys through the gateway.

With ``--tenant`` (or without ``--own``) these use the operator's routes, ``/v1/admin/keys``
(the calling key needs the ``admin`` scope). ``--own`` manages the caller's own tenant's
keys through ``/v1/keys`` (the calling key needs ``keys:manage``, and can grant only scopes
it holds itself).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from jobline.api import KeyOut
from jobline.cli.jobs import parse_when
from jobline.cli.output import EXIT_CODES_HELP, ExitCode, JsonFlag, echo_json, fail, gateway, when

app = typer.Typer(
    help="Create, list and revoke API keys through the gateway (the calling key needs the "
    "admin scope; --own: the caller's tenant, with keys:manage).",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
)

Own = Annotated[
    bool, typer.Option("--own", help="The calling key's own tenant (/v1/keys, keys:manage).")
]


def _line(key: KeyOut) -> str:
    status = "revoked" if key.revoked_at else "active"
    return (
        f"{key.id}  {key.tenant:<16} {key.prefix}  {status:<8} "
        f"{','.join(s.value for s in key.scopes)}  {key.name}  used {when(key.last_used_at)}"
    )


@app.command("create")
def create(
    *,
    scopes: Annotated[
        str,
        typer.Option(
            help="Comma-separated: jobs:write, jobs:read, schedules:write, keys:manage, "
            "policies:write, webhooks:manage, admin."
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="The tenant the key acts for.")] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    expires_at: Annotated[
        str | None, typer.Option(help="When the key stops working (ISO 8601).")
    ] = None,
    own: Own = False,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print it once (on stdout); only its hash is stored."""
    if (tenant is None) == (not own):
        raise fail("give --tenant (operator) or --own (your tenant)", ExitCode.USAGE)
    parsed = [s.strip() for s in scopes.split(",") if s.strip()]
    expires = parse_when(expires_at, "--expires-at", datetime.now(UTC)) if expires_at else None
    with gateway() as client:
        if own:
            created = client.create_own_key(parsed, name=name, expires_at=expires)
        else:
            assert tenant is not None
            created = client.create_key(tenant, parsed, name=name, expires_at=expires)
    if as_json:
        echo_json(created)
        return
    typer.echo(created.key)
    typer.echo(
        f"key {created.id} for tenant {created.tenant} "
        f"({', '.join(s.value for s in created.scopes)}); it is shown only once",
        err=True,
    )


@app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    own: Own = False,
    as_json: JsonFlag = False,
) -> None:
    """List API keys (never their secrets)."""
    if own and tenant:
        raise fail("give --tenant or --own, not both", ExitCode.USAGE)
    with gateway() as client:
        found = client.list_own_keys() if own else client.list_keys(tenant=tenant)
    if as_json:
        echo_json(found)
        return
    for key in found:
        typer.echo(_line(key))


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    own: Own = False,
    as_json: JsonFlag = False,
) -> None:
    """Revoke an API key; it stops working on the next request."""
    with gateway() as client:
        revoked = client.revoke_own_key(key_id) if own else client.revoke_key(key_id)
    if as_json:
        echo_json(revoked)
    else:
        typer.echo(f"revoked {revoked.id}")
