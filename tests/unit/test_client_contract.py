"""What the client package promises: it imports only httpx, pydantic and jobline.api; the
API models say what the gateway enforces (their JSON Schema states the cross-field rules,
their examples are valid); and they agree with the domain's enums and limits."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema_rs
import pytest
from pydantic import BaseModel, ValidationError

import jobline
from jobline import api
from jobline.api import keys, schedules
from jobline.api.fields import TENANT_PATTERN
from jobline.core import apikeys, backoff
from jobline.core import job as states
from jobline.core import schedules as core_schedules

PACKAGE = Path(jobline.__file__).parent
SERVER_LIBRARIES = {
    "fastapi",
    "starlette",
    "sqlalchemy",
    "asyncpg",
    "aiokafka",
    "alembic",
    "uvicorn",
    "typer",
    "cloudevents",
    "prometheus_client",
}
# typing_extensions comes with pydantic (it needs it).
ALLOWED_THIRD_PARTY = {"httpx", "pydantic", "pydantic_core", "typing_extensions"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["client", "api"])
def test_client_and_api_import_nothing_of_the_server_side(package):
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "jobline":
                assert name.startswith(("jobline.api", "jobline.client")), (path.name, name)
                if package == "api":
                    assert name.startswith("jobline.api"), (path.name, name)
            else:
                assert top in stdlib or top in ALLOWED_THIRD_PARTY, (path.name, name)


def test_importing_the_client_loads_no_server_library():
    probe = (
        "import sys, json, jobline.client, jobline.api; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})));"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('jobline'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()
    loaded, ours = set(json.loads(out[0])), json.loads(out[1])
    assert not loaded & SERVER_LIBRARIES
    assert all(m == "jobline" or m.startswith(("jobline.api", "jobline.client")) for m in ours)


# --- the models agree with the domain ------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "domain"),
    [
        (api.JobState, states.JobState),
        (api.BackoffKind, backoff.BackoffKind),
        (api.Scope, apikeys.Scope),
        (api.MisfirePolicy, core_schedules.MisfirePolicy),
        (api.OverlapPolicy, core_schedules.OverlapPolicy),
    ],
)
def test_enums_have_the_domains_values(ours, domain):
    assert [m.value for m in ours] == [m.value for m in domain]


def test_limits_and_patterns_are_the_domains():
    assert apikeys.TENANT_RE.pattern == TENANT_PATTERN
    assert schedules.MAX_CATCH_UP_LIMIT == core_schedules.MAX_CATCH_UP_LIMIT
    assert {s.value for s in api.TERMINAL_STATES} == {s.value for s in states.TERMINAL_STATES}


def test_job_out_is_built_from_a_domain_job():
    now = datetime.now(UTC)
    job = states.Job(
        id=uuid4(),
        tenant_id="t",
        type="echo",
        queue="default",
        state=states.JobState.DEAD,
        payload={"a": 1},
        created_at=now,
        run_at=now,
        attempt=2,
        max_attempts=2,
        metadata={"progress": {"fraction": 1.0, "message": "done"}},
        errors=(
            states.AttemptError(
                2, "ValueError", "bad", states.AttemptOutcome.FAILED, None, now + timedelta(1)
            ),
        ),
    )
    out = api.JobOut.of(job)
    assert out.status is api.JobState.DEAD
    assert out.status.terminal
    assert out.last_error is not None
    assert out.last_error.outcome == "failed"
    assert out.attempts_left == 0
    assert out.progress == api.Progress(fraction=1.0, message="done")
    assert out["links"]["attempts"] == f"/v1/jobs/{job.id}/attempts"
    dumped = out.model_dump(mode="json")
    assert dumped["backoff"]["kind"] == "exponential_jitter"
    assert dumped["status"] == "dead"


def test_key_out_is_built_from_a_stored_key():
    from jobline.pg.keystore import KeyRecord

    record = KeyRecord(
        id=uuid4(),
        tenant_id="acme",
        name="ci",
        prefix="abc",
        scopes=frozenset({apikeys.Scope.JOBS_READ, apikeys.Scope.ADMIN}),
        created_at=datetime.now(UTC),
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )
    assert keys.KeyOut.of(record).scopes == [api.Scope.ADMIN, api.Scope.JOBS_READ]


def test_a_stored_template_reads_back_as_the_same_backoff():
    template = api.JobTemplate(
        type="t", payload={}, backoff=api.BackoffIn(kind="fixed", base_seconds=2, max_seconds=9)
    )
    stored = template.stored()
    assert backoff.BackoffPolicy.from_dict(stored["backoff"]) == backoff.BackoffPolicy(
        backoff.BackoffKind.FIXED, 2.0, 9.0
    )


# --- the schema tells the truth ------------------------------------------------------------


def _validator(model: type[BaseModel]) -> Any:
    return jsonschema_rs.validator_for(model.model_json_schema())


def _agree(model: type[BaseModel], body: dict[str, Any]) -> bool:
    """Whether the schema and the model agree on ``body``; returns the verdict."""
    by_schema = _validator(model).is_valid(body)
    try:
        model.model_validate(body)
        by_model = True
    except ValidationError:
        by_model = False
    assert by_schema == by_model, (model.__name__, body, by_schema, by_model)
    return by_model


def test_run_at_and_delay_seconds_exclude_each_other_in_the_schema():
    job = {"type": "echo", "payload": {}}
    assert _agree(api.JobSpec, {**job, "delay_seconds": 5})
    assert _agree(api.JobSpec, {**job, "run_at": "2030-01-01T00:00:00Z"})
    assert _agree(api.JobSpec, {**job, "run_at": None, "delay_seconds": 5})
    assert not _agree(api.JobSpec, {**job, "run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5})


def test_exactly_one_of_cron_or_interval_in_the_schema():
    base = {"name": "n", "job": {"type": "t", "payload": {}}}
    assert _validator(api.ScheduleIn).is_valid({**base, "cron": "* * * * *"})
    assert _validator(api.ScheduleIn).is_valid({**base, "interval_seconds": 5})
    assert _validator(api.ScheduleIn).is_valid({**base, "cron": None, "interval_seconds": 5})
    assert not _validator(api.ScheduleIn).is_valid(base)
    both = {**base, "cron": "* * * * *", "interval_seconds": 5}
    assert not _validator(api.ScheduleIn).is_valid(both)
    assert not _validator(api.SchedulePatch).is_valid({"cron": None, "interval_seconds": 5})
    assert _validator(api.SchedulePatch).is_valid({"interval_seconds": 5})


def test_queue_dlq_and_out_of_range_years_are_refused_by_schema_and_model_alike():
    job = {"type": "echo", "payload": {}}
    assert not _agree(api.JobSpec, {**job, "queue": "dlq"})
    assert _agree(api.JobSpec, {**job, "queue": "dlq2"})
    assert not _agree(api.JobSpec, {**job, "run_at": "1969-12-31T23:59:59Z"})
    assert not _agree(api.JobSpec, {**job, "run_at": "9001-01-01T00:00:00Z"})
    assert _agree(api.JobSpec, {**job, "run_at": "1970-01-01T00:30:00+01:00"})
    assert _agree(api.JobSpec, {**job, "run_at": "9000-12-31T23:00:00-05:00"})


@pytest.mark.parametrize(
    "model",
    [
        api.JobSpec,
        api.BatchIn,
        api.BackoffIn,
        api.ScheduleIn,
        api.SchedulePatch,
        api.JobTemplate,
        api.KeyIn,
        api.OwnKeyIn,
    ],
)
def test_every_request_body_has_examples_that_are_valid(model):
    schema = model.model_json_schema()
    examples = schema.get("examples")
    assert examples, model.__name__
    for example in examples:
        assert jsonschema_rs.validator_for(schema).is_valid(example), example
        model.model_validate(example)


CRONS = [
    "*/15 * * * *",
    "0 9-17 * * MON-FRI",
    "15 30 2 * * *",
    "0 0 L * *",
    "0 0 * * 5L,1",
    "0 0 * * fri#2",
    "0 0 1-31/2 JAN-mar *",
    "  0   0 * * *",
    "@Daily",
    "5-3 * * * *",
    "60 * * * *",
    "0 24 * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "0 0 * * 5-1",
    "0 0 * * L",
    "0 0 * * FRIL",
    "0 0 * * 1#6",
    "*/0 * * * *",
    "0 0 ? * *",
    "0 0 15W * *",
    "* * * *",
    "@often",
]


@pytest.mark.parametrize("expression", CRONS)
def test_the_cron_pattern_accepts_what_the_scheduler_accepts(expression):
    from jobline.api.cron import cron_pattern
    from jobline.core.cron import parse_cron
    from jobline.core.errors import InvalidSchedule

    try:
        parse_cron(expression)
        accepted = True
    except InvalidSchedule:
        accepted = False
    assert bool(re.match(cron_pattern(), expression)) == accepted


def test_the_time_zone_enum_is_the_schedulers_list():
    from jobline.api.cron import time_zone_names
    from jobline.core.cron import load_timezone

    names = time_zone_names()
    assert "Europe/Berlin" in names
    assert "UTC" in names
    assert "localtime" not in names
    for name in names[::25]:
        load_timezone(name)
    assert api.ScheduleIn.model_json_schema()["properties"]["timezone"]["enum"] == list(names)


def test_numbers_and_times_are_json_numbers_and_rfc3339_strings_only():
    job = {"type": "echo", "payload": {}}
    assert not _agree(api.JobSpec, {**job, "max_attempts": "3"})
    assert not _agree(api.JobSpec, {**job, "max_attempts": True})
    assert _agree(api.JobSpec, {**job, "max_attempts": 3.0})
    assert not _agree(api.JobSpec, {**job, "delay_seconds": "5"})
    assert not _agree(api.JobSpec, {**job, "run_at": 1700000000})
    assert not _agree(api.JobSpec, {**job, "run_at": "2030-01-01T00:00Z"})  # no seconds
    assert _agree(api.JobSpec, {**job, "run_at": "2030-01-01t00:00:00.5+02:00"})
    assert not _agree(api.JobSpec, {**job, "payload": {"a\u0000": 1}})
    assert not _agree(api.JobSpec, {**job, "payload": {"a": [{"b": "\u0000"}]}})
    assert _agree(api.JobSpec, {**job, "payload": {"a": [{"b": "ok", "c": None}]}})
