"""``jobline migrate`` and ``jobline topics ensure`` against this run's servers, with
``--json`` like every other command."""

from __future__ import annotations

import json
from uuid import uuid4

from typer.testing import CliRunner

from jobline.cli import app

runner = CliRunner()


def test_migrate_and_topics_ensure_print_json(database_url, kafka_bootstrap):
    migrated = runner.invoke(app, ["migrate", "--json"], env={"JOBLINE_DATABASE_URL": database_url})
    assert migrated.exit_code == 0, migrated.output
    assert json.loads(migrated.output)["revision"]

    env = {
        "JOBLINE_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "JOBLINE_TOPIC_PREFIX": f"ops{uuid4().hex[:8]}",
    }
    first = runner.invoke(app, ["topics", "ensure", "--queues", "mail", "--json"], env=env)
    assert first.exit_code == 0, first.output
    created = json.loads(first.output)
    assert len(created["created"]) == 4  # work, dlq, events, insights
    again = json.loads(
        runner.invoke(app, ["topics", "ensure", "--queues", "mail", "--json"], env=env).output
    )
    assert again == {"created": [], "present": created["created"]}
