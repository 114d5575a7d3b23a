import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobline.core.backoff import (
    BackoffKind,
    BackoffPolicy,
    delay_seconds,
    exponential,
    fixed,
    full_jitter,
    next_retry_at,
)

bases = st.floats(min_value=0.0, max_value=1e4, allow_nan=False)
caps = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
failures = st.integers(min_value=1, max_value=10_000)
multipliers = st.floats(min_value=1.0, max_value=10.0, allow_nan=False)


def policies() -> st.SearchStrategy[BackoffPolicy]:
    return st.builds(
        lambda kind, base, extra, mult: BackoffPolicy(kind, base, base + extra, mult),
        st.sampled_from(BackoffKind),
        bases,
        caps,
        multipliers,
    )


@given(policies(), failures, st.integers())
def test_delay_never_exceeds_cap_and_is_never_negative(policy, n, seed):
    delay = delay_seconds(policy, n, random.Random(seed))
    assert 0.0 <= delay <= policy.max_seconds


@given(bases, caps, multipliers, failures)
def test_exponential_never_decreases(base, cap, mult, n):
    assert exponential(base, n + 1, cap, mult) >= exponential(base, n, cap, mult)


@given(bases, caps, multipliers, failures, st.integers())
def test_jitter_stays_within_zero_and_the_exponential_delay(base, cap, mult, n, seed):
    delay = full_jitter(base, n, cap, random.Random(seed), mult)
    assert 0.0 <= delay <= exponential(base, n, cap, mult)


@given(policies(), failures, st.integers())
def test_same_seed_same_delay(policy, n, seed):
    assert delay_seconds(policy, n, random.Random(seed)) == delay_seconds(
        policy, n, random.Random(seed)
    )


def test_jitter_actually_varies():
    delays = {full_jitter(1.0, 8, 1000.0, random.Random(seed)) for seed in range(50)}
    assert len(delays) > 40


def test_exponential_doubles_until_the_cap():
    assert [exponential(1.0, n, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_fixed_is_constant_and_capped():
    assert [fixed(3.0, n, 10.0) for n in (1, 2, 50)] == [3.0, 3.0, 3.0]
    assert fixed(30.0, 1, 10.0) == 10.0


def test_huge_failure_counts_do_not_overflow():
    assert exponential(1.0, 10**9, 60.0) == 60.0


def test_next_retry_at_adds_the_delay():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    policy = BackoffPolicy(BackoffKind.EXPONENTIAL, 2.0, 100.0)
    assert next_retry_at(policy, 3, now, random.Random(0)) == now + timedelta(seconds=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_seconds": -1}, "base_seconds"),
        ({"base_seconds": 5, "max_seconds": 1}, "max_seconds"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_invalid_policies_are_rejected(kwargs, message):
    fields = {"kind": BackoffKind.EXPONENTIAL, "base_seconds": 1.0, "max_seconds": 10.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        BackoffPolicy(**fields)


def test_zero_failures_is_an_error():
    with pytest.raises(ValueError, match="failures"):
        exponential(1.0, 0, 10.0)


@given(policies())
def test_policy_round_trips_through_dict(policy):
    assert BackoffPolicy.from_dict(policy.to_dict()) == policy
