"""The registry's decisions: which type and queue a job may name, which topics may be published."""

from __future__ import annotations

import pytest

from jobline.core import registry
from jobline.core.registry import JobTypeRecord, QueueDeclaration, Registry

REGISTRY = Registry.of(
    [QueueDeclaration("default"), QueueDeclaration("emails", 4)],
    [
        JobTypeRecord("echo", "default"),
        JobTypeRecord("send-email", "emails", {"type": "object"}),
        JobTypeRecord("billing.close", "default", allowed_tenants=frozenset({"acme"})),
    ],
)


def test_a_job_naming_no_queue_goes_to_its_types_queue():
    admitted = registry.admit(REGISTRY, "t1", "send-email", None)
    assert admitted.queue == "emails"
    assert admitted.record is REGISTRY.types["send-email"]


def test_a_named_declared_queue_wins_over_the_types_own():
    assert registry.admit(REGISTRY, "t1", "send-email", "default").queue == "default"


def test_an_undeclared_queue_is_refused_naming_the_queue():
    with pytest.raises(registry.UndeclaredQueue, match="'nope' is not declared") as caught:
        registry.admit(REGISTRY, "t1", "echo", "nope")
    assert caught.value.field == "queue"


def test_an_unknown_type_is_refused_naming_the_type():
    with pytest.raises(registry.UnknownJobType, match="'nope'") as caught:
        registry.admit(REGISTRY, "t1", "nope", None)
    assert caught.value.field == "type"


def test_a_type_not_allowed_for_the_tenant_looks_exactly_unknown():
    assert registry.admit(REGISTRY, "acme", "billing.close", None).queue == "default"
    with pytest.raises(registry.UnknownJobType) as hidden:
        registry.admit(REGISTRY, "other", "billing.close", None)
    with pytest.raises(registry.UnknownJobType) as unknown:
        registry.admit(REGISTRY, "other", "billing.open", None)
    assert str(hidden.value).replace("close", "open") == str(unknown.value)


def test_accept_undeclared_lets_unknown_names_through_unchecked():
    admitted = registry.admit(REGISTRY, "t1", "made-up", "made-up-queue", accept_undeclared=True)
    assert admitted == registry.Admission("made-up-queue", None)
    assert registry.admit(REGISTRY, "t1", "made-up", None, accept_undeclared=True).queue == (
        "default"
    )
    # A registered type is still checked (its record comes back for the payload check).
    assert registry.admit(REGISTRY, "t1", "echo", None, accept_undeclared=True).record


def test_visible_types_are_the_tenants_by_name():
    assert [t.name for t in REGISTRY.visible_types("acme")] == [
        "billing.close",
        "echo",
        "send-email",
    ]
    assert [t.name for t in REGISTRY.visible_types("other")] == ["echo", "send-email"]


def test_only_work_topics_of_undeclared_queues_are_undeclared():
    logical = ["events", "jobs.dlq", "insights", "jobs.default", "jobs.x", "jobs.emails"]
    assert registry.undeclared_queues(logical, {"default", "emails"}) == {"x"}
    assert registry.undeclared_queues(["events"], set()) == set()


@pytest.mark.parametrize(
    ("name", "partitions"), [("dlq", None), ("Upper", None), ("", None), ("ok", 0), ("ok", 10_001)]
)
def test_a_queue_declaration_is_checked(name, partitions):
    with pytest.raises(ValueError, match=r"invalid queue name|partitions"):
        QueueDeclaration(name, partitions)
