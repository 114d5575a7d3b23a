"""The ``jobline`` command.

Everything but ``dev``, ``migrate``, ``admin-key`` and ``topics`` goes through the gateway's API
(JOBLINE_GATEWAY_URL, JOBLINE_API_KEY, else the dev stack's gateway and key); ``events
tail`` reads the broker. Each command takes ``--json``; the exit codes are listed in
:mod:`jobline.cli.output` and in ``jobline --help``.
"""

from __future__ import annotations

import typer

from jobline.cli import (
    dlq,
    events,
    jobs,
    keys,
    limits,
    ops,
    schedules,
    stats,
    webhooks,
    workflows,
)
from jobline.cli.output import EXIT_CODES_HELP

app = typer.Typer(help="Jobline: durable background jobs. " + EXIT_CODES_HELP, no_args_is_help=True)
app.command("dev")(ops.dev)
app.command("migrate")(ops.migrate_cmd)
app.command("admin-key")(ops.admin_key_cmd)
app.add_typer(ops.topics_app, name="topics")
app.add_typer(jobs.app, name="jobs")
app.add_typer(dlq.app, name="dlq")
app.add_typer(schedules.app, name="schedules")
app.add_typer(keys.app, name="keys")
app.add_typer(events.app, name="events")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(workflows.app, name="workflows")
app.add_typer(limits.app, name="limits")
app.command("queues")(stats.queues)
app.command("stats")(stats.stats)

__all__ = ["app"]
