"""The submit path's hand-written job JSON equals the API model's, field for field."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from jobline.api.jobs import JobOut
from jobline.core.states import Claim, Due, Fail, submit, transition
from jobline_gateway.render import job_json
from tests.support import make_job

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_new_job_renders_as_the_model_does():
    job = submit(make_job("acme", payload={"x": [1, "é"]}, metadata={"m": None}), T0).job
    assert job_json(job) == JobOut.of(job).model_dump(mode="json")


def test_a_failed_job_with_its_error_and_times_renders_as_the_model_does():
    job = submit(make_job("acme", run_at=T0 + timedelta(seconds=3)), T0).job
    job = transition(job, Due(1), T0 + timedelta(seconds=3)).job
    job = transition(job, Claim(1, "w", 30), T0 + timedelta(seconds=4)).job
    job = transition(job, Fail(1, "w", "E", "bad"), T0 + timedelta(seconds=5)).job
    assert job_json(job) == JobOut.of(job).model_dump(mode="json")


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(8999, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]),
    ),
    st.integers(min_value=0, max_value=10**6),
)
def test_times_and_numbers_render_as_the_model_does(when, priority):
    job = submit(make_job("acme", priority=priority % 10), when).job
    assert job_json(job) == JobOut.of(job).model_dump(mode="json")
