from datetime import UTC, datetime

import pytest

from jobline.core import cloudevent as events
from jobline.core.errors import InvalidEvent

NOW = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


def test_job_event_round_trips_in_structured_json_mode():
    event = events.job_event(
        job_id="j-1", sequence=3, state="retrying", time=NOW, data={"attempt": 2}
    )
    raw = events.encode(event)
    parsed = events.decode(raw)
    assert parsed.get_id() == "j-1:3"
    assert parsed.get_type() == "jobline.job.retrying"
    assert parsed.get_source() == events.JOB_SOURCE
    assert parsed.get_subject() == "j-1"
    assert parsed.get_specversion() == "1.0"
    assert parsed.get_time() == NOW
    assert events.data_of(parsed) == {"attempt": 2}
    assert b'"time": "2026-05-01T08:30:00Z"' in raw


def test_naive_times_are_rejected():
    with pytest.raises(InvalidEvent, match="timezone"):
        events.build(id="1", type="t", source="/s", time=datetime(2026, 1, 1), data={})


@pytest.mark.parametrize(
    "raw",
    [
        None,
        b"{",
        b'{"id": "1"}',
        b'{"id":"1","source":"/s","type":"t","specversion":"1.0","data":[1]}',
    ],
)
def test_malformed_events_raise_invalid_event(raw):
    with pytest.raises(InvalidEvent):
        events.decode(raw)


def test_the_fast_job_event_reads_as_the_sdks_own():
    from datetime import UTC, datetime

    from jobline.core import cloudevent

    when = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    data = {"job_id": "j", "state": "running", "nested": {"é": [1, 2.5, None]}}
    fast = cloudevent.decode(
        cloudevent.encode_job_event(job_id="j", sequence=3, state="started", time=when, data=data)
    )
    sdk = cloudevent.decode(
        cloudevent.encode(
            cloudevent.job_event(job_id="j", sequence=3, state="started", time=when, data=data)
        )
    )
    assert fast.get_attributes() == sdk.get_attributes()
    assert fast.get_data() == sdk.get_data()
