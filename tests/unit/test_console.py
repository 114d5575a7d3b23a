"""The console's pure parts: the session cookie and CSRF token, the jobs filters and id
prefix ranges, the cron preview, the chart series and the lifecycle timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from jobline.core.job import Job, JobState
from jobline_gateway.console import session, timeline
from jobline_gateway.console.live import sse
from jobline_gateway.console.pages_auth import safe_next
from jobline_gateway.console.pages_jobs import id_range, parse_filters
from jobline_gateway.console.pages_overview import series
from jobline_gateway.console.pages_schedules import preview

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SECRET = b"s" * 32


def _session(ttl: timedelta = timedelta(hours=1)) -> session.Session:
    return session.new_session(uuid4(), "jl_abcd", "acme", NOW, ttl)


def test_a_session_round_trips_and_expires():
    made = _session()
    value = session.encode(made, SECRET)
    assert session.decode(value, SECRET, NOW) == made
    assert session.decode(value, SECRET, NOW + timedelta(hours=1)) is None  # expired
    assert session.decode(value, b"other" * 8, NOW) is None  # another secret
    assert session.decode(None, SECRET, NOW) is None


def test_a_tampered_session_is_refused():
    value = session.encode(_session(), SECRET)
    body, mac = value.split(".")
    forged = session.encode(_session().switched("globex"), SECRET).split(".")[0]
    assert session.decode(f"{forged}.{mac}", SECRET, NOW) is None
    flipped = ("B" if mac[0] == "A" else "A") + mac[1:]
    assert session.decode(f"{body}.{flipped}", SECRET, NOW) is None
    assert session.decode("garbage", SECRET, NOW) is None
    assert session.decode("a.b.c", SECRET, NOW) is None


def test_the_csrf_token_is_per_session():
    one, two = _session(), _session()
    token = session.csrf_token(one, SECRET)
    assert session.csrf_ok(one, SECRET, token)
    assert session.csrf_ok(one.switched("globex"), SECRET, token)  # same login, same token
    assert not session.csrf_ok(two, SECRET, token)
    assert not session.csrf_ok(one, SECRET, None)
    assert not session.csrf_ok(one, SECRET, "")


def test_after_login_only_console_paths():
    assert safe_next("/ui/jobs?state=dead") == "/ui/jobs?state=dead"
    for hostile in ("https://evil.example", "//evil.example/ui", "/ui\\@evil", None, "/v1/jobs"):
        assert safe_next(hostile) == "/ui"


def test_an_id_prefix_is_a_primary_key_range():
    low, high = id_range("3f2a") or (None, None)
    assert low == UUID("3f2a0000-0000-0000-0000-000000000000")
    assert high == UUID("3f2affff-ffff-ffff-ffff-ffffffffffff")
    job = uuid4()
    assert id_range(str(job)) == (job, job)
    assert id_range("order-4711") is None  # not hex: an idempotency key
    assert id_range("") is None


def test_filters_name_what_is_wrong():
    where, errors = parse_filters({"state": "dead", "type": "mail.send", "since": "1h"}, NOW)
    assert (where.status, where.type, where.created_after) == (
        "dead",
        "mail.send",
        NOW - timedelta(hours=1),
    )
    assert errors == []
    where, errors = parse_filters({"state": "zombie", "queue": "bad queue!", "since": "1y"}, NOW)
    assert (where.status, where.queue, where.created_after) == (None, None, None)
    assert len(errors) == 3


def test_cron_preview_in_the_schedules_zone():
    fires, error = preview("30 2 * * *", "Europe/Berlin", NOW)
    assert error is None
    assert len(fires) == 5
    assert [f.strftime("%H:%M %Z") for f in fires[:1]] == ["02:30 CET"]
    assert preview("61 * * * *", "UTC", NOW)[1]
    assert preview("* * * * *", "Mars/Olympus", NOW)[1]
    assert preview("", "UTC", NOW) == ([], None)


def test_chart_series_fill_quiet_buckets_with_zero():
    rows = [{"at": NOW - timedelta(minutes=2), "succeeded": 5, "dead": 1}]
    data = series(rows, NOW - timedelta(minutes=3), timedelta(minutes=1), NOW)
    assert data["series"]["succeeded"] == [0, 5, 0, 0]
    assert data["series"]["dead"] == [0, 1, 0, 0]
    assert data["x"][1] == int((NOW - timedelta(minutes=2)).timestamp())


def test_sse_frames_carry_multiline_html():
    assert sse("update", "<p>\n</p>") == b"event: update\ndata: <p>\ndata: </p>\n\n"


def test_the_lifecycle_of_a_job_that_failed_then_succeeded():
    job = Job(
        id=uuid4(),
        tenant_id="acme",
        type="flaky",
        queue="default",
        state=JobState.SUCCEEDED,
        payload={},
        created_at=NOW,
        run_at=NOW,
        attempt=2,
        finished_at=NOW + timedelta(seconds=9),
    )
    attempts = [
        {
            "attempt": 1,
            "worker_id": "w1",
            "started_at": NOW + timedelta(seconds=1),
            "finished_at": NOW + timedelta(seconds=2),
            "outcome": "failed",
            "error": {"error_class": "FlakyFailure", "message": "boom"},
        },
        {
            "attempt": 2,
            "worker_id": "w2",
            "started_at": NOW + timedelta(seconds=5),
            "finished_at": NOW + timedelta(seconds=9),
            "outcome": "succeeded",
            "error": None,
        },
    ]
    steps = timeline.lifecycle(job, attempts)
    assert [s.kind for s in steps] == [
        "submitted",
        "started",
        "failed",
        "started",
        "succeeded",
        "succeeded",
    ]
    assert steps[2].text == "attempt 1 failed: FlakyFailure"
    assert steps[2].worker == "w1"
