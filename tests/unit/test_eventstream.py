"""The event stream's pure rules: positions (Last-Event-ID), filters, frames."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from jobline.api.events import EVENT_TYPE_PATTERN, STREAM_ID_PATTERN, LifecycleEvent
from jobline.core import cloudevent, eventstream
from jobline.core.eventstream import EventFilter, InvalidStreamId, Positions


def event(tenant: str = "acme", state: str = "succeeded", **data: object) -> bytes:
    body = {
        "job_id": "j1",
        "tenant": tenant,
        "type": "mail.send",
        "queue": "default",
        "state": state,
        "attempt": 1,
        "sequence": 2,
        **data,
    }
    return cloudevent.encode_job_event(
        job_id="j1", sequence=2, state=state, time=datetime(2030, 1, 1, tzinfo=UTC), data=body
    )


def test_positions_round_trip_and_are_opaque_but_documented():
    positions = Positions({1: 45, 0: 123})
    assert positions.encode() == "p0-123.p1-45"
    assert Positions.decode("p0-123.p1-45") == positions
    assert re.fullmatch(STREAM_ID_PATTERN, positions.encode())


@pytest.mark.parametrize(
    "text", ["", "p0-1.", "p0-1.p0-2", "0-1", "p0-x", "p1024-0", "p0-99999999999999999999", "x"]
)
def test_ids_the_api_never_issued_are_refused(text):
    with pytest.raises(InvalidStreamId):
        Positions.decode(text)


def test_event_types_take_short_or_full_names_and_refuse_others():
    assert eventstream.event_types(["succeeded", "jobline.job.dead"]) == {
        "jobline.job.succeeded",
        "jobline.job.dead",
    }
    with pytest.raises(ValueError, match="finished"):
        eventstream.event_types(["finished"])
    # The API's pattern names exactly the events the platform publishes.
    for name in eventstream.EVENT_NAMES:
        assert re.fullmatch(EVENT_TYPE_PATTERN, name)
        assert re.fullmatch(EVENT_TYPE_PATTERN, f"jobline.job.{name},{name}")
    assert not re.fullmatch(EVENT_TYPE_PATTERN, "running")


def test_select_keeps_the_tenants_matching_events_only():
    mine = EventFilter(tenant="acme")
    assert eventstream.select(event(), mine) is not None
    for other in ("acme2", "acm", "other"):  # a prefix or extension is another tenant
        assert eventstream.select(event(other), mine) is None
    typed = EventFilter(types=frozenset({"jobline.job.dead"}), tenant="acme", queue="default")
    assert eventstream.select(event(state="succeeded"), typed) is None
    assert eventstream.select(event(state="dead"), typed) is not None
    assert eventstream.select(event(queue="q2", state="dead"), typed) is None
    assert eventstream.select(event(), EventFilter(tenant="acme", job_type="other")) is None
    assert eventstream.select(event(), EventFilter(tenant="acme", job_id="j2")) is None
    # A tenant's id inside another tenant's event (its payload, say) selects nothing.
    assert eventstream.select(event("other", queue="acme"), mine) is None


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"",
        b"not json",
        b"[]",
        b'{"type": "jobline.job.queued", "data": "acme"}',
        b'{"type": "jobline.insight.anomaly", "data": {"tenant": "acme"}}',
    ],
)
def test_what_is_no_lifecycle_event_is_never_selected(raw):
    assert eventstream.select(raw, EventFilter(tenant="acme")) is None


def test_an_event_frame_is_one_id_event_and_data_line():
    pretty = json.dumps(json.loads(event()), indent=2).encode()  # another producer's style
    selected = eventstream.select(pretty, EventFilter(tenant="acme"))
    assert selected is not None
    frame = eventstream.event_frame(Positions({0: 5}), selected).decode()
    lines = frame.split("\n")
    assert lines[:2] == ["id: p0-5", "event: jobline.job.succeeded"]
    assert lines[2].startswith("data: {")
    assert lines[3:] == ["", ""]
    parsed = LifecycleEvent.model_validate_json(lines[2].removeprefix("data: "))
    assert parsed.data.tenant == "acme"
    assert eventstream.position_frame(Positions({0: 5, 1: 2}), retry_ms=2000) == (
        b"retry: 2000\nid: p0-5.p1-2\n\n"
    )
    assert eventstream.comment("heart\nbeat") == b": heart beat\n\n"
