from jobline.core.backoff import BackoffKind, BackoffPolicy
from jobline.core.jobdefaults import JobDefaults, TypePolicy, resolve
from jobline.settings import JobDefaultsSettings, load

DEFAULTS = JobDefaults(max_attempts=5, timeout_seconds=300.0, backoff=BackoffPolicy())
POLICY = TypePolicy(max_attempts=3, backoff=BackoffPolicy(BackoffKind.FIXED, 2.0, 2.0))


def test_explicit_values_win():
    mine = BackoffPolicy(BackoffKind.EXPONENTIAL, 0.5, 8.0)
    got = resolve(DEFAULTS, POLICY, max_attempts=9, backoff=mine, timeout_seconds=12.0)
    assert (got.max_attempts, got.backoff, got.timeout_seconds) == (9, mine, 12.0)


def test_the_type_policy_comes_before_the_defaults():
    got = resolve(DEFAULTS, POLICY)
    assert (got.max_attempts, got.backoff, got.timeout_seconds) == (3, POLICY.backoff, 300.0)


def test_a_partial_policy_falls_back_part_by_part():
    got = resolve(DEFAULTS, TypePolicy(max_attempts=None, backoff=POLICY.backoff))
    assert (got.max_attempts, got.backoff) == (5, POLICY.backoff)
    assert resolve(DEFAULTS, None) == resolve(DEFAULTS, TypePolicy())


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_KIND", "fixed")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_BASE_SECONDS", "3")
    monkeypatch.setenv("JOBLINE_JOB_DEFAULT_BACKOFF_MAX_SECONDS", "3")
    defaults = load(JobDefaultsSettings).job_defaults
    assert defaults.max_attempts == 7
    assert defaults.backoff == BackoffPolicy(BackoffKind.FIXED, 3.0, 3.0)
