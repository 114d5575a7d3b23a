import pytest

from jobline.core import topics


@pytest.mark.parametrize("name", ["default", "a", "emails_v2", "img-resize", "0", "x" * 64])
def test_valid_queue_names(name):
    assert topics.validate_queue_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "dlq", "Emails", "a.b", "a b", "a/b", "x" * 65, "é", "queue\n"]
)
def test_invalid_queue_names(name):
    with pytest.raises(ValueError, match="invalid queue name"):
        topics.validate_queue_name(name)


def test_topic_names():
    assert topics.work_topic("jobline", "emails") == "jobline.jobs.emails"
    assert topics.dlq_topic("jobline") == "jobline.jobs.dlq"
    assert topics.events_topic("acme") == "acme.events"
    assert topics.insights_topic("acme") == "acme.insights"


def test_work_topic_rejects_the_dlq_and_bad_names():
    with pytest.raises(ValueError, match="reserved"):
        topics.work_topic("jobline", "dlq")
    with pytest.raises(ValueError, match="invalid queue name"):
        topics.work_topic("jobline", "Bad")


@pytest.mark.parametrize(
    ("logical", "topic"),
    [
        ("jobs.emails", "p.jobs.emails"),
        ("jobs.dlq", "p.jobs.dlq"),
        ("events", "p.events"),
        ("insights", "p.insights"),
    ],
)
def test_resolve(logical, topic):
    assert topics.resolve("p", logical) == topic


def test_work_logical_round_trips_through_resolve():
    logical = topics.work("emails")
    assert logical == "jobs.emails"
    assert topics.resolve("p", logical) == topics.work_topic("p", "emails")


@pytest.mark.parametrize("logical", ["", "jobs.", "jobs.Bad", "job.emails", "events.x", "p.events"])
def test_resolve_rejects_unknown_names(logical):
    with pytest.raises(ValueError, match=r"unknown logical topic|invalid queue name"):
        topics.resolve("p", logical)


def test_core_topics_lists_each_queue_once_then_the_shared_topics():
    assert topics.core_topics("p", ["b", "a", "b"]) == [
        "p.jobs.b",
        "p.jobs.a",
        "p.jobs.dlq",
        "p.events",
        "p.insights",
    ]
    assert topics.core_topics("p", []) == ["p.jobs.dlq", "p.events", "p.insights"]


def test_core_topics_validates_queues():
    with pytest.raises(ValueError, match="reserved"):
        topics.core_topics("p", ["dlq"])


def test_the_dead_letter_topic_is_not_a_work_topic():
    assert topics.is_work(topics.work("emails"))
    assert not topics.is_work(topics.DLQ)
    assert not topics.is_work(topics.EVENTS)


def test_queue_of_a_work_topic():
    assert topics.queue_of(topics.work("emails")) == "emails"
    with pytest.raises(ValueError, match="not a work topic"):
        topics.queue_of(topics.DLQ)
    with pytest.raises(ValueError, match="not a work topic"):
        topics.queue_of(topics.EVENTS)


def test_priority_zero_keeps_the_queues_plain_topic():
    assert topics.work("emails", 0) == topics.work("emails") == "jobs.emails"
    assert topics.work_topic("p", "emails", 0) == "p.jobs.emails"


@pytest.mark.parametrize("priority", range(1, 10))
def test_each_priority_above_zero_has_a_lane(priority):
    logical = topics.work("emails", priority)
    assert logical == f"jobs.emails.p{priority}"
    assert topics.is_work(logical)
    assert topics.queue_of(logical) == "emails"
    assert topics.resolve("p", logical) == topics.work_topic("p", "emails", priority)


@pytest.mark.parametrize("priority", [-1, 10, 99])
def test_a_priority_outside_0_to_9_has_no_lane(priority):
    with pytest.raises(ValueError, match="priority"):
        topics.work("emails", priority)


@pytest.mark.parametrize("logical", ["jobs.emails.p0", "jobs.emails.p10", "jobs.emails.x1"])
def test_an_unknown_lane_does_not_resolve(logical):
    with pytest.raises(ValueError, match="unknown logical topic"):
        topics.resolve("p", logical)


def test_lanes_list_every_priority_highest_first():
    lanes = topics.lanes("p", "p1")  # a queue may be named like a lane
    assert list(lanes.values()) == list(range(9, -1, -1))
    assert lanes["p.jobs.p1"] == 0
    assert lanes["p.jobs.p1.p9"] == 9
