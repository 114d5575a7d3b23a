"""The gateway's admission of submitted jobs against a registry snapshot (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from jobline.api.jobs import JobSpec
from jobline.core.registry import JobTypeRecord, QueueDeclaration
from jobline.pg.registry import JobTypeRow, QueueRow, Stored
from jobline_gateway.registry_admission import Candidate, check
from jobline_gateway.registry_cache import Snapshot
from jobline_gateway.settings import Settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EMAIL_SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}},
    "required": ["to"],
}


def snapshot(*types: JobTypeRecord, queues: tuple[str, ...] = ("default", "emails")) -> Snapshot:
    stored = Stored(
        [QueueRow(QueueDeclaration(q), "tests", NOW, NOW) for q in queues],
        [JobTypeRow(t, "worker", "w1", NOW, NOW) for t in types],
    )
    return Snapshot.of(stored, started=0.0)


SNAPSHOT = snapshot(
    JobTypeRecord("echo", "default"), JobTypeRecord("send-email", "emails", EMAIL_SCHEMA)
)


def spec(**fields) -> JobSpec:
    return JobSpec.model_validate({"payload": {}, **fields})


def test_queues_are_resolved_per_job():
    candidates = [
        Candidate.of(spec(type="send-email", payload={"to": "a"})),
        Candidate.of(spec(type="send-email", payload={"to": "a"}, queue="default")),
        Candidate.of(spec(type="echo")),
    ]
    assert check(SNAPSHOT, "t", candidates, accept_undeclared=False) == (
        ["emails", "default", "default"],
        [],
        False,
    )


def test_every_refusal_of_a_batch_is_named_with_its_item_and_field():
    candidates = [
        Candidate.of(spec(type="echo"), "/jobs/0"),
        Candidate.of(spec(type="nope"), "/jobs/1"),
        Candidate.of(spec(type="send-email", payload={"to": 5}), "/jobs/2"),
        Candidate.of(spec(type="echo", queue="elsewhere"), "/jobs/3"),
    ]
    _, errors, missed = check(SNAPSHOT, "t", candidates, accept_undeclared=False)
    assert missed  # a name not found: worth one fresh read before refusing
    assert [(e.field, e.pointer) for e in errors] == [
        ("jobs.1.type", "/jobs/1/type"),
        ("jobs.2.payload.to", "/jobs/2/payload/to"),
        ("jobs.3.queue", "/jobs/3/queue"),
    ]
    assert errors[1].message == "5 is not of type 'string'"
    assert all(e.location == "body" for e in errors)


def test_a_bad_payload_alone_is_no_miss():
    candidates = [Candidate.of(spec(type="send-email"))]
    _, errors, missed = check(SNAPSHOT, "t", candidates, accept_undeclared=False)
    assert [(e.field, e.pointer) for e in errors] == [("payload.to", "/payload/to")]
    assert not missed


def test_an_unusable_stored_schema_is_not_enforced():
    broken = snapshot(JobTypeRecord("x", "default", {"type": "nope"}))
    assert broken.schemas == {}
    assert check(broken, "t", [Candidate.of(spec(type="x"))], accept_undeclared=False)[1] == []


def test_accept_undeclared_is_refused_in_production():
    url, bootstrap = "postgresql://h/db", "h:9092"
    assert Settings(
        database_url=url, kafka_bootstrap=bootstrap, env="test", gateway_accept_undeclared=True
    )
    with pytest.raises(ValidationError, match="not allowed with JOBLINE_ENV=prod"):
        Settings(
            database_url=url, kafka_bootstrap=bootstrap, env="prod", gateway_accept_undeclared=True
        )
