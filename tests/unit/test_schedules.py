import contextlib
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobline.core.cron import parse_cron
from jobline.core.errors import InvalidSchedule, JoblineError
from jobline.core.schedules import (
    FirePlan,
    MisfirePolicy,
    OverlapPolicy,
    ScheduleSpec,
    fire_key,
    next_fire,
    next_fires,
    plan_fires,
    resume_next_fire,
    spec_from_row,
)

S = timedelta(seconds=1)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe"]


def local(t: datetime, tz: str) -> str:
    return t.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S%z")


def utc(*fields: int) -> datetime:
    """A UTC datetime from (year, month, day[, hour[, minute[, second]]])."""
    y, mo, d, h, mi, sec = (*fields, 0, 0, 0)[:6]
    return datetime(y, mo, d, h, mi, sec, tzinfo=UTC)


# --- an independent oracle for a small cron grammar ----------------------------------------

RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12)}


@st.composite
def field(draw: st.DrawFn, lo: int, hi: int, star_ok: bool = True) -> tuple[str, set[int]]:
    kind = draw(st.sampled_from(["star", "step", "one", "range", "list", "rangestep"]))
    if kind == "star" and star_ok:
        return "*", set(range(lo, hi + 1))
    if kind == "step" and star_ok:
        n = draw(st.integers(1, hi - lo + 1))
        return f"*/{n}", set(range(lo, hi + 1, n))
    a = draw(st.integers(lo, hi))
    if kind in {"range", "rangestep"}:
        b = draw(st.integers(a, hi))
        if kind == "rangestep":
            n = draw(st.integers(1, 5))
            return f"{a}-{b}/{n}", set(range(a, b + 1, n))
        return f"{a}-{b}", set(range(a, b + 1))
    if kind == "list":
        b = draw(st.integers(lo, hi))
        return f"{a},{b}", {a, b}
    return str(a), {a}


@st.composite
def cron_exprs(draw: st.DrawFn) -> tuple[str, list[set[int]]]:
    """A cron expression and its allowed sets (second, minute, hour, dom, month, dow, and)."""
    with_seconds = draw(st.booleans())
    # Keep schedules dense enough that 40 fires stay within a few years.
    sec = draw(field(0, 59)) if with_seconds else ("0", {0})
    minute = draw(field(0, 59))
    hour = draw(field(0, 23))
    dom = draw(st.sampled_from([("*", set(range(1, 32))), ("1-28", set(range(1, 29)))]))
    month = draw(st.sampled_from([("*", set(range(1, 13))), ("3-4,10-11", {3, 4, 10, 11})]))
    dow = draw(st.sampled_from([("*", set(range(7))), ("1-5", {1, 2, 3, 4, 5}), ("0", {0})]))
    parts = [minute, hour, dom, month, dow]
    if with_seconds:
        parts.insert(0, sec)
    expr = " ".join(p[0] for p in parts)
    # Debian cron: day-of-month AND day-of-week if either starts with "*", else OR.
    day_and = {1} if dom[0].startswith("*") or dow[0].startswith("*") else set()
    return expr, [sec[1], minute[1], hour[1], dom[1], month[1], dow[1], day_and]


def matches(naive: datetime, sets: list[set[int]]) -> bool:
    dow = (naive.weekday() + 1) % 7
    dom_ok, dow_ok = naive.day in sets[3], dow in sets[5]
    day_ok = (dom_ok and dow_ok) if sets[6] else (dom_ok or dow_ok)
    return (
        naive.second in sets[0]
        and naive.minute in sets[1]
        and naive.hour in sets[2]
        and naive.month in sets[4]
        and day_ok
    )


def reading(t: datetime, tz: str) -> datetime:
    return t.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


def is_gap_end(t: datetime, tz: str) -> bool:
    """The local clock jumped forward at t: one second earlier it read more than 1 s less."""
    return reading(t, tz) - reading(t - S, tz) > S


afters = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


# --- next_fire properties ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(cron_exprs(), st.sampled_from(ZONES), afters)
def test_next_fire_strictly_increasing_and_matches(
    expr_sets: tuple[str, list[set[int]]], tz: str, after: datetime
) -> None:
    expr, sets = expr_sets
    spec = ScheduleSpec(cron=expr, timezone=tz)
    wall_clock = parse_cron(expr, tz).wall_clock
    fires = next_fires(spec, after, 40)
    assert fires, expr
    prev = after
    for t in fires:
        assert t.tzinfo is UTC
        assert t > prev
        assert t.microsecond == 0
        assert next_fire(spec, prev) == t  # one at a time agrees with the preview
        if not matches(reading(t, tz), sets):
            # Only a wall-clock time shifted out of a DST gap may not read as a match.
            assert wall_clock, (expr, tz, local(t, tz))
            assert is_gap_end(t, tz), (expr, tz, local(t, tz))
        prev = t


def oracle_day(expr_sets: tuple[str, list[set[int]]], tz: str, day: datetime) -> list[datetime]:
    """Brute force, minute resolution, over [day - 6 h, day + 30 h] in UTC."""
    expr, sets = expr_sets
    zone = ZoneInfo(tz)
    lo, hi = day - timedelta(hours=6), day + timedelta(hours=30)
    out: set[datetime] = set()
    if not parse_cron(expr, tz).wall_clock:
        t = lo + timedelta(minutes=1)
        while t <= hi:
            if matches(reading(t, tz), sets):
                out.add(t)
            t += timedelta(minutes=1)
        return sorted(out)
    n = reading(lo, tz)
    while n <= reading(hi, tz) + timedelta(hours=2):
        n += timedelta(minutes=1)
        if not matches(n, sets):
            continue
        first = n.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if reading(first, tz) != n:  # in a gap: the first real minute reading later than n
            first = n.replace(tzinfo=zone, fold=1).astimezone(UTC)
            while reading(first, tz) <= n:
                first += timedelta(minutes=1)
        if lo < first <= hi:
            out.add(first)
    return sorted(out)


DST_DAYS = [
    ("Europe/Berlin", utc(2024, 3, 31)),
    ("Europe/Berlin", utc(2024, 10, 27)),
    ("America/New_York", utc(2024, 3, 10)),
    ("America/New_York", utc(2024, 11, 3)),
    ("Australia/Sydney", utc(2024, 10, 5)),
    ("Australia/Sydney", utc(2024, 4, 6)),
    ("Australia/Lord_Howe", utc(2024, 10, 5)),  # a 30-minute shift
]


@settings(max_examples=40, deadline=None)
@given(cron_exprs().filter(lambda e: len(e[0].split()) == 5), st.sampled_from(DST_DAYS))
def test_next_fires_equal_brute_force_on_dst_days(
    expr_sets: tuple[str, list[set[int]]], zone_day: tuple[str, datetime]
) -> None:
    tz, day = zone_day
    spec = ScheduleSpec(cron=expr_sets[0], timezone=tz)
    lo, hi = day - timedelta(hours=6), day + timedelta(hours=30)
    got = []
    t = next_fire(spec, lo)
    while t is not None and t <= hi:
        got.append(t)
        t = next_fire(spec, t)
    assert got == oracle_day(expr_sets, tz, day), expr_sets[0]


# --- DST, by example -------------------------------------------------------------------------

# (zone, spring-forward day, fall-back day, a time inside the gap, a repeated time)
DST = [
    ("Europe/Berlin", utc(2024, 3, 30), utc(2024, 10, 26), "30 2", "30 2"),
    ("America/New_York", utc(2024, 3, 9), utc(2024, 11, 2), "30 2", "30 1"),
    ("Australia/Sydney", utc(2024, 10, 5), utc(2024, 4, 6), "30 2", "30 2"),
]


@pytest.mark.parametrize(("tz", "spring", "fall", "gap", "repeated"), DST)
def test_spring_forward_shifts_to_end_of_gap(
    tz: str, spring: datetime, fall: datetime, gap: str, repeated: str
) -> None:
    spec = ScheduleSpec(cron=f"{gap} * * *", timezone=tz)
    fires = next_fires(spec, spring - timedelta(days=1), 4)
    times = [local(t, tz)[11:19] for t in fires]
    assert sorted(times) == ["02:30:00", "02:30:00", "02:30:00", "03:00:00"]
    # The shifted fire is exactly the first instant after the gap, one per day.
    shifted = fires[times.index("03:00:00")]
    assert is_gap_end(shifted, tz)
    assert len({reading(t, tz).date() for t in fires}) == 4


@pytest.mark.parametrize(("tz", "spring", "fall", "gap", "repeated"), DST)
def test_fall_back_fires_repeated_time_once(
    tz: str, spring: datetime, fall: datetime, gap: str, repeated: str
) -> None:
    spec = ScheduleSpec(cron=f"{repeated} * * *", timezone=tz)
    fires = next_fires(spec, fall - timedelta(days=1), 4)
    readings = [reading(t, tz) for t in fires]
    assert all(r.strftime("%H:%M") == repeated.split()[1].zfill(2) + ":30" for r in readings)
    assert [r.date() for r in readings] == sorted({r.date() for r in readings})  # one per day
    # The fire on the repeated day is the first occurrence (the summer-time offset).
    zone = ZoneInfo(tz)
    summer = [t for t in fires if t.astimezone(zone).dst()]
    winter = [t for t in fires if not t.astimezone(zone).dst()]
    assert summer
    assert winter
    assert len(fires) == 4


def test_fall_back_first_occurrence_exact() -> None:
    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    # 2024-10-27: 03:00 CEST -> 02:00 CET. 02:30 CEST is 00:30 UTC; 02:30 CET (01:30 UTC)
    # does not fire.
    assert next_fire(spec, utc(2024, 10, 26, 12)) == utc(2024, 10, 27, 0, 30)
    assert next_fire(spec, utc(2024, 10, 27, 0, 30)) == utc(2024, 10, 28, 1, 30)
    # Asked from inside the second pass of the repeated hour: the next day, not a repeat.
    assert next_fire(spec, utc(2024, 10, 27, 1, 0)) == utc(2024, 10, 28, 1, 30)


def test_six_field_fixed_time_uses_the_same_dst_rule() -> None:
    spec = ScheduleSpec(cron="0 30 1 * * *", timezone="America/New_York")
    fires = next_fires(spec, utc(2024, 11, 2, 12), 2)
    assert [local(t, "America/New_York") for t in fires] == [
        "2024-11-03 01:30:00-0400",
        "2024-11-04 01:30:00-0500",
    ]
    spec = ScheduleSpec(cron="15 30 2 * * *", timezone="America/New_York")
    assert local(next_fire(spec, utc(2024, 3, 10)) or utc(1970, 1, 1), "America/New_York") == (
        "2024-03-10 03:00:00-0400"
    )


def test_cadence_fires_in_both_passes_of_the_repeated_hour() -> None:
    spec = ScheduleSpec(cron="*/30 * * * *", timezone="America/New_York")
    fires = next_fires(spec, utc(2024, 11, 3, 4, 59), 6)  # 00:59 EDT
    assert [local(t, "America/New_York")[11:] for t in fires] == [
        "01:00:00-0400",
        "01:30:00-0400",
        "01:00:00-0500",
        "01:30:00-0500",
        "02:00:00-0500",
        "02:30:00-0500",
    ]
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(fires))


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Australia/Sydney"])
@pytest.mark.parametrize("when", ["spring", "fall"])
def test_every_second_schedule_fires_every_second(tz: str, when: str) -> None:
    spec = ScheduleSpec(cron="* * * * * *", timezone=tz)
    row = next(d for d in DST if d[0] == tz)
    day = row[1] if when == "spring" else row[2]
    # Find the transition in the two days from `day` and look at an hour around it.
    t = day
    zone = ZoneInfo(tz)
    while t.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
        t += timedelta(minutes=15)
    start = t - timedelta(minutes=20)  # the transition is within 15 min before t
    fires = next_fires(spec, start, 1000) + next_fires(spec, start + 1000 * S, 1000)
    assert fires == [start + S * k for k in range(1, 2001)]


def test_every_second_over_a_long_run() -> None:
    spec = ScheduleSpec(cron="* * * * * *")
    start = utc(2025, 12, 31, 23, 0, 0)
    fires = next_fires(spec, start + timedelta(microseconds=500), 1000)
    assert fires == [start + S * k for k in range(1, 1001)]


# --- parsing and validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("61 * * * *", "bad minute field '61'"),
        ("* 24 * * *", "bad hour field '24'"),
        ("* * 0 * *", "bad day-of-month field '0'"),
        ("* * * 13 *", "bad month field '13'"),
        ("* * * * 8", "bad day-of-week field '8'"),
        ("60 * * * * *", "bad second field '60'"),
        ("*/0 * * * *", "bad minute field '*/0'"),
        ("5-1 * * * *", "bad minute field '5-1'"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("", "got 0"),
        ("0 0 30 2 *", "day-of-month"),
        ("@every 5m", "expected 5 fields"),
    ],
)
def test_invalid_cron_names_the_problem(expr: str, needle: str) -> None:
    with pytest.raises(InvalidSchedule, match="invalid cron expression") as info:
        parse_cron(expr, "UTC")
    assert needle in str(info.value)
    assert isinstance(info.value, JoblineError)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "europe/berlin", "localtime", "", "../etc/passwd"])
def test_unknown_timezone_names_it(tz: str) -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone") as info:
        ScheduleSpec(cron="* * * * *", timezone=tz)
    assert repr(tz) in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789*/,-LW#? ABCDEFJMNOSTUaz@", max_size=30))
def test_parse_cron_raises_only_invalid_schedule(text: str) -> None:
    with contextlib.suppress(InvalidSchedule):
        parse_cron(text, "UTC")


def test_macros_and_whitespace() -> None:
    assert parse_cron("@daily").expr == "0 0 * * *"
    assert parse_cron("  0   9 * *  MON-FRI ", "Europe/Berlin").wall_clock
    assert not parse_cron("*/5 * * * *").wall_clock


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "exactly one of"),
        ({"cron": "* * * * *", "interval_seconds": 5}, "exactly one of"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"interval_seconds": -3}, "interval_seconds"),
        ({"interval_seconds": True}, "interval_seconds"),
        ({"interval_seconds": 1.5}, "interval_seconds"),
        ({"interval_seconds": 5, "start_at": datetime(2024, 1, 1)}, "start_at"),
        ({"interval_seconds": 5, "start_at": utc(2024, 2, 1), "end_at": utc(2024, 1, 1)}, "end_at"),
        ({"interval_seconds": 5, "misfire_policy": "later"}, "misfire_policy"),
        ({"interval_seconds": 5, "overlap_policy": "never"}, "overlap_policy"),
        ({"interval_seconds": 5, "catch_up_limit": 0}, "catch_up_limit"),
        ({"interval_seconds": 5, "catch_up_limit": 10_001}, "catch_up_limit"),
        ({"interval_seconds": 5, "timezone": "Nowhere/Land"}, "time zone"),
    ],
)
def test_invalid_spec(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidSchedule, match=needle):
        ScheduleSpec(**kwargs)  # type: ignore[arg-type]


def test_policies_accept_their_string_values() -> None:
    spec = ScheduleSpec(
        interval_seconds=5,
        misfire_policy="catch_up",  # type: ignore[arg-type]
        overlap_policy="skip_if_running",  # type: ignore[arg-type]
    )
    assert spec.misfire_policy is MisfirePolicy.CATCH_UP
    assert spec.overlap_policy is OverlapPolicy.SKIP_IF_RUNNING


# --- intervals and bounds ------------------------------------------------------------------


def test_interval_anchored_at_start_at() -> None:
    start = utc(2024, 1, 1, 0, 0, 7)
    spec = ScheduleSpec(interval_seconds=10, start_at=start)
    assert next_fire(spec, utc(2023, 6, 1)) == start  # before the start: the start itself
    assert next_fire(spec, start) == start + 10 * S  # strictly after
    assert next_fires(spec, start + 25 * S, 3) == [start + k * 10 * S for k in (3, 4, 5)]


def test_interval_anchor_parameter_and_epoch_default() -> None:
    spec = ScheduleSpec(interval_seconds=60)
    assert next_fire(spec, utc(2024, 5, 5, 12, 0, 30)) == utc(2024, 5, 5, 12, 1)
    anchor = utc(2024, 5, 5, 12, 0, 13)
    assert next_fire(spec, utc(2024, 5, 5, 12, 0, 30), anchor=anchor) == utc(2024, 5, 5, 12, 1, 13)


def test_interval_ignores_dst() -> None:
    spec = ScheduleSpec(interval_seconds=3600, timezone="Europe/Berlin")
    fires = next_fires(spec, utc(2024, 10, 26, 22), 5)
    assert all(b - a == timedelta(hours=1) for a, b in pairwise(fires))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 100_000), afters, afters)
def test_interval_fires_are_on_the_grid(step: int, anchor: datetime, after: datetime) -> None:
    spec = ScheduleSpec(interval_seconds=step)
    fires = next_fires(spec, after, 5, anchor=anchor)
    for t in fires:
        assert (t - anchor) % timedelta(seconds=step) == timedelta(0)
        assert t >= anchor
    assert fires[0] > after
    assert fires[0] - after <= timedelta(seconds=step) or fires[0] == anchor
    assert all(b - a == timedelta(seconds=step) for a, b in pairwise(fires))


def test_cron_start_and_end_are_inclusive_bounds() -> None:
    spec = ScheduleSpec(cron="0 * * * *", start_at=utc(2024, 1, 1, 10), end_at=utc(2024, 1, 1, 13))
    assert next_fires(spec, utc(2023, 1, 1), 10) == [utc(2024, 1, 1, h) for h in (10, 11, 12, 13)]
    assert next_fire(spec, utc(2024, 1, 1, 13)) is None
    interval = ScheduleSpec(
        interval_seconds=5, start_at=utc(2024, 1, 1), end_at=utc(2024, 1, 1, 0, 0, 12)
    )
    assert next_fires(interval, utc(2020, 1, 1), 10) == [
        utc(2024, 1, 1, 0, 0, s) for s in (0, 5, 10)
    ]


def test_naive_times_are_refused() -> None:
    spec = ScheduleSpec(interval_seconds=5)
    with pytest.raises(ValueError, match="aware"):
        next_fire(spec, datetime(2024, 1, 1))


def test_fire_key_is_utc_and_deterministic() -> None:
    t = datetime(2024, 3, 31, 4, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert fire_key(42, t) == "schedule:42:2024-03-31T02:00:00Z"
    assert fire_key("s1", utc(2024, 1, 1) + timedelta(microseconds=5)) == (
        "schedule:s1:2024-01-01T00:00:00.000005Z"
    )


# --- misfires: a 10 s outage of an every-second schedule ------------------------------------

T0 = utc(2025, 6, 1, 12, 0, 0)
NOW = T0 + 10 * S  # planned T0, the relay returns 10 s later: T0..T0+9 late, T0+10 on time


def every_second(policy: str, limit: int = 100, **kw: object) -> ScheduleSpec:
    return ScheduleSpec(cron="* * * * * *", misfire_policy=policy, catch_up_limit=limit, **kw)  # type: ignore[arg-type]


def test_on_time_fires_exactly_the_due_time() -> None:
    for policy in MisfirePolicy:
        plan = plan_fires(every_second(policy), T0, T0 + timedelta(milliseconds=300))
        assert plan == FirePlan((T0,), missed=0, dropped=0, next_fire_at=T0 + S)


def test_not_yet_due_fires_nothing() -> None:
    plan = plan_fires(every_second("skip"), T0, T0 - S / 2)
    assert plan == FirePlan((), 0, 0, T0)
    assert plan_fires(every_second("skip"), None, T0) == FirePlan((), 0, 0, None)


def test_grace_boundary() -> None:
    spec = ScheduleSpec(cron="0 * * * *")
    assert plan_fires(spec, T0, T0 + S - timedelta(microseconds=1)).missed == 0
    late = plan_fires(spec, T0, T0 + S)
    assert (late.fire_times, late.missed, late.dropped) == ((T0,), 1, 0)
    assert plan_fires(spec, T0, T0 + 5 * S, grace=10 * S).missed == 0


def test_skip_after_outage() -> None:
    plan = plan_fires(every_second("skip"), T0, NOW)
    assert plan == FirePlan((NOW,), missed=10, dropped=10, next_fire_at=NOW + S)
    # Back between two planned times (none on time): the latest missed one fires.
    hourly = ScheduleSpec(cron="0 * * * *", misfire_policy=MisfirePolicy.SKIP)
    plan = plan_fires(hourly, T0, T0 + timedelta(hours=10, minutes=20))
    assert plan.fire_times == (T0 + timedelta(hours=10),)
    assert (plan.missed, plan.dropped) == (11, 10)
    assert plan.next_fire_at == T0 + timedelta(hours=11)


def test_fire_once_after_outage() -> None:
    plan = plan_fires(every_second("fire_once"), T0, NOW)
    # One job for T0..T0+9 keyed by the latest missed time, and the on-time T0+10.
    assert plan == FirePlan((NOW - S, NOW), missed=10, dropped=9, next_fire_at=NOW + S)


def test_catch_up_after_outage() -> None:
    plan = plan_fires(every_second("catch_up", limit=100), T0, NOW)
    assert plan.fire_times == tuple(T0 + k * S for k in range(11))
    assert (plan.missed, plan.dropped, plan.next_fire_at) == (10, 0, NOW + S)
    limited = plan_fires(every_second("catch_up", limit=4), T0, NOW)
    assert limited.fire_times == tuple(T0 + k * S for k in (6, 7, 8, 9, 10))
    assert (limited.missed, limited.dropped) == (10, 6)


def test_plans_are_idempotent_in_keys() -> None:
    # Two relays planning the same row at slightly different nows agree on the keys they share.
    a = plan_fires(every_second("catch_up"), T0, NOW)
    b = plan_fires(every_second("catch_up"), T0, NOW + S / 2)
    assert {fire_key(1, t) for t in a.fire_times} <= {fire_key(1, t) for t in b.fire_times}


def test_overlap_skip_if_running() -> None:
    spec = every_second("catch_up", overlap_policy="skip_if_running")
    busy = plan_fires(spec, T0, NOW, running=True)
    assert (busy.fire_times, busy.overlap_skipped, busy.next_fire_at) == ((), 11, NOW + S)
    idle = plan_fires(spec, T0, NOW, running=False)
    assert (idle.fire_times, idle.overlap_skipped) == ((NOW,), 10)
    allow = plan_fires(every_second("skip"), T0, NOW, running=True)
    assert allow.fire_times == (NOW,)


def test_long_backlog_is_bounded() -> None:
    now = T0 + timedelta(hours=30)  # 108 000 missed every-second fires
    plan = plan_fires(every_second("catch_up", limit=5), T0, now)
    assert plan.fire_times == tuple(now - k * S for k in (5, 4, 3, 2, 1, 0))
    assert plan.truncated
    assert plan.missed >= 20_000
    assert plan.next_fire_at == now + S
    skip = plan_fires(every_second("skip"), T0, now + S / 2)
    assert skip.fire_times == (now,)


def test_interval_backlog_is_exact() -> None:
    spec = ScheduleSpec(
        interval_seconds=1, start_at=T0, misfire_policy=MisfirePolicy.CATCH_UP, catch_up_limit=3
    )
    now = T0 + timedelta(days=7)
    plan = plan_fires(spec, T0, now)
    assert plan.fire_times == (now - 3 * S, now - 2 * S, now - S, now)
    assert (plan.missed, plan.dropped, plan.truncated) == (7 * 86400, 7 * 86400 - 3, False)


def test_plan_respects_end_at() -> None:
    spec = every_second("catch_up", end_at=T0 + 3 * S)
    plan = plan_fires(spec, T0, NOW)
    assert plan.fire_times == (T0, T0 + S, T0 + 2 * S, T0 + 3 * S)
    assert plan.next_fire_at is None


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(list(MisfirePolicy)),
    st.integers(1, 20),
    st.integers(0, 120),
    st.integers(0, 999_999),
)
def test_plan_invariants(policy: MisfirePolicy, limit: int, outage: int, micros: int) -> None:
    spec = every_second(policy, limit=limit)
    now = T0 + outage * S + timedelta(microseconds=micros)
    plan = plan_fires(spec, T0, now)
    due = outage + 1
    assert list(plan.fire_times) == sorted(set(plan.fire_times))
    assert all(T0 <= t <= now for t in plan.fire_times)
    assert plan.next_fire_at is not None
    assert plan.next_fire_at > now
    assert plan.next_fire_at - now <= S
    assert plan.missed + 1 == due  # exactly one due time is within a 1 s grace
    assert plan.fire_times[-1] == T0 + outage * S  # the present is never skipped
    assert plan.dropped == plan.missed - (len(plan.fire_times) - 1)
    expected_fires = {
        MisfirePolicy.SKIP: 1,
        MisfirePolicy.FIRE_ONCE: 1 + min(1, plan.missed),
        MisfirePolicy.CATCH_UP: 1 + min(limit, plan.missed),
    }[policy]
    assert len(plan.fire_times) == expected_fires


# --- pause and resume ------------------------------------------------------------------------


def test_resume_without_missed_times_keeps_the_next_fire() -> None:
    spec = ScheduleSpec(cron="0 3 * * *")
    assert resume_next_fire(spec, utc(2024, 1, 1, 1), utc(2024, 1, 1, 3)) == utc(2024, 1, 1, 3)
    assert resume_next_fire(spec, utc(2024, 1, 1, 1)) == utc(2024, 1, 1, 3)


@pytest.mark.parametrize("policy", ["skip", "fire_once"])
def test_resume_owes_one_run_under_skip_and_fire_once(policy: str) -> None:
    spec = ScheduleSpec(cron="0 3 * * *", misfire_policy=policy)  # type: ignore[arg-type]
    paused_pending = utc(2024, 1, 1, 3)
    now = utc(2024, 1, 8, 12)  # paused for a week
    resumed = resume_next_fire(spec, now, paused_pending)
    assert resumed == utc(2024, 1, 8, 3)
    plan = plan_fires(spec, resumed, now)
    assert plan.fire_times == (utc(2024, 1, 8, 3),)
    assert (plan.missed, plan.dropped, plan.next_fire_at) == (1, 0, utc(2024, 1, 9, 3))


def test_resume_catch_up_owes_at_most_the_limit() -> None:
    spec = ScheduleSpec(cron="0 3 * * *", misfire_policy=MisfirePolicy.CATCH_UP, catch_up_limit=3)
    now = utc(2024, 1, 8, 12)
    resumed = resume_next_fire(spec, now, utc(2024, 1, 1, 3))
    assert resumed == utc(2024, 1, 6, 3)
    plan = plan_fires(spec, resumed, now)
    assert plan.fire_times == (utc(2024, 1, 6, 3), utc(2024, 1, 7, 3), utc(2024, 1, 8, 3))
    assert plan.dropped == 0


def test_pause_then_resume_every_second() -> None:
    # Paused at T0 with T0 pending, resumed 10 s later: nothing fired in between (the relay
    # does not plan a paused schedule), then the policy decides.
    for policy, expected in [
        ("skip", (NOW - S,)),
        ("fire_once", (NOW - S,)),
        ("catch_up", tuple(T0 + k * S for k in range(7, 10))),
    ]:
        spec = every_second(policy, limit=3)
        resumed = resume_next_fire(spec, NOW - S / 2, T0)
        assert resumed is not None
        plan = plan_fires(spec, resumed, NOW - S / 2)
        assert plan.fire_times == expected, policy
        assert plan.next_fire_at == NOW


def test_resume_after_end_is_none() -> None:
    spec = ScheduleSpec(interval_seconds=5, start_at=T0, end_at=T0 + 20 * S)
    assert resume_next_fire(spec, T0 + timedelta(hours=1), T0 + 5 * S) == T0 + 20 * S
    assert resume_next_fire(spec, T0 + timedelta(hours=1)) is None


def test_half_hour_shift_keeps_cadence_fires() -> None:
    # Lord Howe springs forward 02:00 -> 02:30. A cadence in hour 3 must start at 03:00 sharp
    # (cronsim's own tz-aware stepping would first fire at 03:30 here).
    spec = ScheduleSpec(cron="*/15 */3 * * *", timezone="Australia/Lord_Howe")
    fires = next_fires(spec, utc(2024, 10, 5, 15), 3)
    assert [local(t, "Australia/Lord_Howe")[11:] for t in fires] == [
        "03:00:00+1100",
        "03:15:00+1100",
        "03:30:00+1100",
    ]


def test_spec_from_row_reads_a_stored_schedule() -> None:
    row = {
        "cron": None,
        "timezone": "UTC",
        "interval_seconds": 30.0,
        "start_at": None,
        "end_at": None,
        "misfire_policy": "catch_up",
        "catch_up_limit": 5,
        "overlap_policy": "skip_if_running",
    }
    spec = spec_from_row(row)
    assert spec.interval_seconds == 30
    assert spec.misfire_policy is MisfirePolicy.CATCH_UP
    assert spec.overlap_policy is OverlapPolicy.SKIP_IF_RUNNING
    with pytest.raises(InvalidSchedule, match="time zone"):
        spec_from_row({**row, "cron": "* * * * *", "interval_seconds": None, "timezone": "Mars/X"})
