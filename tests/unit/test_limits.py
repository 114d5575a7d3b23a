"""Scope rules, quota arithmetic and token-bucket math (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobline.core import quotas, scopes, tokens
from jobline.core.apikeys import ALL_SCOPES, TENANT_SCOPES, Scope
from jobline.core.quotas import QuotaExceeded, Quotas
from jobline.core.schedules import ScheduleSpec

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DEFAULTS = Quotas(
    max_schedules=3,
    min_schedule_interval_seconds=60,
    max_unfinished_jobs=100,
    submissions_per_second=10.0,
    submission_burst=20,
)


# --- scopes ---------------------------------------------------------------------------------


def test_tenant_scopes_are_everything_but_the_operators() -> None:
    assert Scope.ADMIN not in TENANT_SCOPES
    assert TENANT_SCOPES | {Scope.ADMIN} == ALL_SCOPES
    assert {Scope.KEYS_MANAGE, Scope.POLICIES_WRITE} <= TENANT_SCOPES


def test_a_key_grants_only_scopes_it_holds() -> None:
    held = {Scope.KEYS_MANAGE, Scope.JOBS_READ}
    assert scopes.grantable(held, {Scope.JOBS_READ}) == {Scope.JOBS_READ}
    assert scopes.grantable(held, held) == held
    with pytest.raises(scopes.ScopesNotHeld) as raised:
        scopes.grantable(held, {Scope.JOBS_READ, Scope.JOBS_WRITE, Scope.ADMIN})
    assert raised.value.missing == {Scope.JOBS_WRITE, Scope.ADMIN}
    assert "admin, jobs:write" in str(raised.value)


def test_own_tenant_and_any_of() -> None:
    scopes.check_own_tenant("acme", "acme")
    with pytest.raises(scopes.OtherTenant):
        scopes.check_own_tenant("acme", "globex")
    assert scopes.allows({Scope.POLICIES_WRITE}, scopes.POLICY_WRITERS)
    assert scopes.allows({Scope.ADMIN}, scopes.POLICY_WRITERS)
    assert not scopes.allows({Scope.JOBS_WRITE, Scope.KEYS_MANAGE}, scopes.POLICY_WRITERS)


# --- quotas ---------------------------------------------------------------------------------


def test_overrides_replace_only_what_they_name() -> None:
    assert quotas.resolve(DEFAULTS, None) == DEFAULTS
    resolved = quotas.resolve(DEFAULTS, {"max_schedules": 7, "submission_burst": None, "x": 1})
    assert resolved.max_schedules == 7
    assert resolved.submission_burst == 20
    with pytest.raises(ValueError, match="max_schedules"):
        Quotas(0, 1, 1, 1.0, 1)


def test_schedule_count() -> None:
    quotas.check_schedule_count(2, DEFAULTS)
    with pytest.raises(QuotaExceeded) as raised:
        quotas.check_schedule_count(3, DEFAULTS)
    assert raised.value.retry_after is None  # a 422: waiting does not help
    assert raised.value.quota == "max_schedules"


@pytest.mark.parametrize(
    ("spec", "gap"),
    [
        (ScheduleSpec(interval_seconds=90), 90.0),
        (ScheduleSpec(cron="*/5 * * * *"), 300.0),
        (ScheduleSpec(cron="*/10 * * * * *"), 10.0),  # six fields: seconds
        (ScheduleSpec(cron="0 9,17 * * *"), 8 * 3600.0),
        (ScheduleSpec(cron="0 3 * * *", end_at=NOW), None),  # ended: never fires again
    ],
)
def test_shortest_interval(spec: ScheduleSpec, gap: float | None) -> None:
    assert quotas.shortest_interval(spec, NOW) == gap


def test_schedule_interval() -> None:
    quotas.check_schedule_interval(ScheduleSpec(interval_seconds=60), NOW, DEFAULTS)
    quotas.check_schedule_interval(ScheduleSpec(cron="* * * * *"), NOW, DEFAULTS)
    with pytest.raises(QuotaExceeded, match="every 30s"):
        quotas.check_schedule_interval(ScheduleSpec(cron="*/30 * * * * *"), NOW, DEFAULTS)
    with pytest.raises(QuotaExceeded):
        quotas.check_schedule_interval(ScheduleSpec(interval_seconds=59), NOW, DEFAULTS)


def test_unfinished_jobs() -> None:
    quotas.check_unfinished(90, 10, DEFAULTS)
    with pytest.raises(QuotaExceeded) as later:
        quotas.check_unfinished(95, 10, DEFAULTS)
    assert later.value.retry_after == quotas.UNFINISHED_RETRY_SECONDS  # 429: jobs finish
    with pytest.raises(QuotaExceeded) as never:
        quotas.check_unfinished(0, 101, DEFAULTS)
    assert never.value.retry_after is None  # 422: this request can never fit


def test_recount_only_when_the_tenant_could_be_near_its_quota() -> None:
    roomy = Quotas(10, 60, 100_000, 100.0, 1000)
    # Counted 1,000 a second ago: the tenant cannot have reached 100,000 since.
    assert not quotas.recount_needed(1000, 50, 1.0, 1, roomy)
    # Close to the quota, or a count older than the longest age: recount.
    assert quotas.recount_needed(98_900, 50, 1.0, 1, roomy)
    assert quotas.recount_needed(1000, 0, quotas.MAX_COUNT_AGE_SECONDS, 1, roomy)
    # Growth counts the schedules' firing too: 10 schedules every 60 s.
    assert quotas.recount_needed(0, 0, 10.0, 0, Quotas(10, 1, 1010, 0.001, 1000))


def test_a_batch_larger_than_the_burst_never_fits() -> None:
    quotas.check_batch_fits(20, DEFAULTS)
    with pytest.raises(QuotaExceeded) as raised:
        quotas.check_batch_fits(21, DEFAULTS)
    assert raised.value.retry_after is None
    assert quotas.rate_exceeded(0.25, DEFAULTS).retry_after == 0.25


# --- token buckets --------------------------------------------------------------------------


def test_refill_is_capped_and_ignores_a_clock_stepping_back() -> None:
    assert tokens.refill(0.0, 1.5, rate=10, burst=20) == 15
    assert tokens.refill(5.0, 10.0, rate=10, burst=20) == 20
    assert tokens.refill(5.0, -3.0, rate=10, burst=20) == 5
    assert tokens.wait_for(2.5, 3, rate=10) == pytest.approx(0.05)
    assert tokens.wait_for(5, 3, rate=10) == 0


def test_block_size() -> None:
    assert tokens.block_size(1000, 2000, 0.1, wanted=1) == 100
    assert tokens.block_size(1000, 2000, 0.1, wanted=500) == 500  # a batch at hand
    assert tokens.block_size(1000, 50, 0.1, wanted=1) == 50  # never above the burst
    assert tokens.block_size(2, 4, 0.1, wanted=1) == 1  # at least one


def test_lease_is_all_asked_or_what_is_there_or_nothing() -> None:
    assert tokens.lease(50.0, asked=10, needed=3, rate=10) == tokens.Grant(10, 40.0, 0.0)
    partial = tokens.lease(5.7, asked=10, needed=3, rate=10)
    assert (partial.granted, partial.wait) == (5, 0.0)
    assert partial.tokens == pytest.approx(0.7)
    refused = tokens.lease(2.0, asked=10, needed=3, rate=10)
    assert refused.granted == 0
    assert refused.tokens == 2.0
    assert refused.wait == pytest.approx(0.1)


def test_leases_never_admit_more_than_the_bucket() -> None:
    """Many gateways leasing from one bucket over time admit at most burst + rate * t."""
    rate, burst, bucket, now, admitted = 100.0, 200, 200.0, 0.0, 0
    for step in range(1000):
        elapsed = 0.003 * (step % 7)
        now += elapsed
        bucket = tokens.refill(bucket, elapsed, rate, burst)
        grant = tokens.lease(bucket, asked=10, needed=1, rate=rate)
        bucket = grant.tokens
        admitted += grant.granted
    assert admitted <= burst + rate * now + 1e-9


def test_local_buckets() -> None:
    buckets = tokens.TokenBuckets[str](rate=1.0, burst=2)
    assert buckets.take("a", 0.0) is None
    assert buckets.take("a", 0.0) is None
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert buckets.take("b", 0.0) is None  # each key its own bucket
    assert buckets.take("a", 1.0) is None
    assert tokens.retry_after_header(0.01) == "1"
    assert tokens.retry_after_header(2.2) == "3"
