import pytest

from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.jobdefaults import PLATFORM_DEFAULTS, TypePolicy, resolve
from jobline.settings import JobDefaultsSettings, load

DEFAULTS = PLATFORM_DEFAULTS
POLICY = TypePolicy(max_attempts=3, backoff=BackoffPolicy(BackoffKind.FIXED, 2.0, 2.0))


def test_explicit_values_win():
    mine = {"kind": "exponential", "base_seconds": 0.5, "max_seconds": 8.0}
    got = resolve(DEFAULTS, POLICY, max_attempts=9, backoff=mine, timeout_seconds=12.0)
    assert (got.max_attempts, got.timeout_seconds) == (9, 12.0)
    assert got.backoff == BackoffPolicy(BackoffKind.EXPONENTIAL, 0.5, 8.0)


def test_a_partial_backoff_takes_the_rest_from_the_policy_that_applies():
    got = resolve(DEFAULTS, POLICY, backoff={"max_seconds": 60.0})
    assert got.backoff == BackoffPolicy(BackoffKind.FIXED, 2.0, 60.0)
    # No policy: the platform's defaults fill in; a larger base lifts the inherited cap.
    got = resolve(DEFAULTS, None, backoff={"base_seconds": 900.0})
    assert got.backoff.kind is DEFAULTS.backoff.kind
    assert (got.backoff.base_seconds, got.backoff.max_seconds) == (900.0, 900.0)
    with pytest.raises(ValueError, match="max_seconds"):
        resolve(DEFAULTS, POLICY, backoff={"max_seconds": 1.0})  # below the policy's base


def test_the_settings_defaults_are_the_platform_defaults():
    defaults = JobDefaultsSettings().job_defaults
    assert defaults == PLATFORM_DEFAULTS


def test_the_type_policy_comes_before_the_defaults():
    got = resolve(DEFAULTS, POLICY)
    assert (got.max_attempts, got.backoff) == (3, POLICY.backoff)
    assert got.timeout_seconds == DEFAULTS.timeout_seconds


def test_a_partial_policy_falls_back_part_by_part():
    got = resolve(DEFAULTS, TypePolicy(max_attempts=None, backoff=POLICY.backoff))
    assert (got.max_attempts, got.backoff) == (DEFAULTS.max_attempts, POLICY.backoff)
    assert resolve(DEFAULTS, None) == resolve(DEFAULTS, TypePolicy())


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_KIND", "fixed")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_BASE_SECONDS", "3")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_MAX_SECONDS", "3")
    defaults = load(JobDefaultsSettings).job_defaults
    assert defaults.max_attempts == 7
    assert defaults.backoff == BackoffPolicy(BackoffKind.FIXED, 3.0, 3.0)
