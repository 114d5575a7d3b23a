"""The CLI's own logic, on a fake gateway (no servers): exit codes, --json, time options,
event filters."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from jobline.cli import app, output
from jobline.cli.events import event_filter, event_line
from jobline.cli.jobs import parse_when
from jobline.client import NO_RETRIES, Client
from tests.unit.test_client import job_json, problem

runner = CliRunner()


@pytest.fixture
def gateway(monkeypatch):
    """Route the CLI's client to ``handler`` (set by the test)."""
    state: dict[str, Any] = {}

    def make() -> Client:
        return Client(
            "http://gw", "jl_x", transport=httpx.MockTransport(state["handler"]), retry=NO_RETRIES
        )

    monkeypatch.setattr(output, "Client", make)
    return state


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (lambda r: problem(404, "No job x."), 1),
        (lambda r: problem(409, "Job is succeeded."), 1),
        (lambda r: problem(404, "Not Found"), 3),
        (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r)), 4),
    ],
)
def test_failures_have_their_documented_exit_codes(gateway, answer, code):
    gateway["handler"] = answer
    args = ["queues"] if code == 3 else ["jobs", "get", "00000000-0000-4000-8000-000000000000"]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert result.output.startswith("error: ")


def test_json_is_the_apis_own_shape_and_watch_exits_5_on_a_dead_job(gateway):
    job = job_json(status="dead", attempt=5)
    gateway["handler"] = lambda r: httpx.Response(200, json=job)
    got = runner.invoke(app, ["jobs", "get", job["id"], "--json"])
    assert got.exit_code == 0
    assert json.loads(got.output)["status"] == "dead"
    watched = runner.invoke(app, ["jobs", "watch", job["id"]])
    assert watched.exit_code == 5
    assert "dead" in watched.output


def test_redrive_needs_ids_a_filter_or_all(gateway):
    gateway["handler"] = lambda r: pytest.fail("no request expected")
    result = runner.invoke(app, ["dlq", "redrive"])
    assert result.exit_code == 2
    assert "--all" in result.output


def test_times_are_iso_or_a_duration_ago():
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert parse_when("15m", "--since", now) == now - timedelta(minutes=15)
    assert parse_when("2h", "--since", now) == now - timedelta(hours=2)
    assert parse_when("2030-01-01T10:00:00", "--since", now) == datetime(2030, 1, 1, 10, tzinfo=UTC)
    assert parse_when("2030-01-01T10:00:00+02:00", "--since", now).utcoffset() == timedelta(hours=2)
    with pytest.raises(typer.Exit) as caught:
        parse_when("yesterday", "--since", now)
    assert caught.value.exit_code == 2


def test_event_filters_match_type_job_tenant_and_job_type():
    data = {"job_id": "j1", "tenant": "acme", "type": "send-email", "attempt": 1}
    assert event_filter(["succeeded"], None, None, None).matches("jobline.job.succeeded", data)
    assert not event_filter(["dead"], None, None, None).matches("jobline.job.succeeded", data)
    assert event_filter(None, "j1", "acme", "send-email").matches("jobline.job.queued", data)
    assert not event_filter(None, "j2", None, None).matches("jobline.job.queued", data)
    assert not event_filter(None, None, "other", None).matches("jobline.job.queued", data)
    line = event_line("jobline.job.dead", "t", {**data, "error": {"class": "E", "message": "m"}})
    assert "dead" in line
    assert "E: m" in line


def test_submit_sends_the_unique_options_and_prints_the_existing_job(gateway):
    sent: list[dict[str, Any]] = []
    existing = job_json(unique_key="report-42")

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=existing)  # debounced: the holder

    gateway["handler"] = handler
    args = ["jobs", "submit", "echo", "--unique-key", "report-42"]
    got = runner.invoke(app, [*args, "--unique-policy", "debounce", "--unique-window", "30"])
    assert got.exit_code == 0, got.output
    assert got.output.strip() == existing["id"]
    assert sent[0]["unique"] == {"key": "report-42", "policy": "debounce", "window_seconds": 30.0}


def test_submit_unique_options_need_a_key_and_a_held_key_exits_1(gateway):
    gateway["handler"] = lambda r: problem(409, "Job j holds the unique key 'k'.", job_id=None)
    no_key = runner.invoke(app, ["jobs", "submit", "echo", "--unique-policy", "replace"])
    assert no_key.exit_code == 2
    held = runner.invoke(app, ["jobs", "submit", "echo", "--unique-key", "k"])
    assert held.exit_code == 1
    assert "holds the unique key" in held.output
