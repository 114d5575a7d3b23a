"""Recurring schedules, the pure core: when a schedule fires and what to fire after an outage.

No I/O and no wall clock: every time is a parameter, tz-aware, and every returned time is UTC.
Cron parsing and the daylight-saving rules live in `jobline.cron` (read its docstring: fixed
times of day shift out of a spring-forward gap to the first instant after it and fire once on a
repeated hour; cadences like ``*/5 * * * *`` follow real time).

Intervals are absolute: fires are at ``anchor + k * interval_seconds`` (k >= 0), unaffected by
DST. The anchor is the `anchor` argument if given, else `start_at`, else the Unix epoch (so an
every-60-seconds schedule with neither fires on the minute, the same on every relay).

Bounds: a fire time t satisfies ``start_at <= t <= end_at`` (both inclusive, both optional).

Misfires (`plan_fires`). The relay stores each schedule's `next_fire_at`, the oldest planned
time not yet fired. When it looks at `now`, every planned time in ``[next_fire_at, now]`` is
*due*. A due time is *late* (a misfire) when ``now - t >= grace`` (default 1 s), so a relay
that ticks a little late still fires on time, and on an every-second schedule exactly one due
time is on time. On-time fires always fire. The policy decides the late ones:

* ``skip`` — run only the most recent planned time: if a due time is on time it alone fires and
  every late one is dropped; otherwise the latest late time fires and the older are dropped.
* ``fire_once`` — one make-up run for everything missed: a single job whose fire time (and so
  idempotency key) is the latest late time stands for all of them; on-time fires fire as usual.
* ``catch_up`` — every late time fires, oldest first, but only the most recent
  `catch_up_limit` of them: the older ones are dropped, so the backlog that runs is the one
  nearest to now and the sequence of fires has no hole before the present.

`overlap_policy` ``skip_if_running``: when the caller says a job of this schedule is still
queued or running, nothing fires (the times are counted in `overlap_skipped`); when not, at most
one job fires per plan (the latest), since the others would overlap it.

Pause and resume (`resume_next_fire`). A paused schedule is not planned at all, so its stored
`next_fire_at` stays put. "Resume continues from now under the misfire policy": the planned
times that passed while paused are treated as missed, and the policy decides how many of them
still run — ``skip`` and ``fire_once`` one (the latest), ``catch_up`` the latest
`catch_up_limit`. `resume_next_fire` returns the earliest of those (a time <= now, due at once),
or the next fire after now if nothing was missed; the next `plan_fires` then fires exactly those,
and the older pause-time fires are neither run nor counted as misfires.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from jobline.core.cron import CronExpr, load_timezone, parse_cron
from jobline.core.errors import InvalidSchedule

__all__ = [
    "MAX_CATCH_UP_LIMIT",
    "MAX_PREVIEW",
    "FirePlan",
    "MisfirePolicy",
    "OverlapPolicy",
    "ScheduleSpec",
    "fire_key",
    "next_fire",
    "next_fires",
    "parse_cron",
    "plan_fires",
    "resume_next_fire",
]

MAX_CATCH_UP_LIMIT = 1000
MAX_PREVIEW = 1000
DEFAULT_GRACE = timedelta(seconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A backlog longer than this many planned times is not walked one by one: the most recent ones
# are found in a window before now, and the misfire count becomes a lower bound.
_MAX_SCAN = 20_000
_TINY = timedelta(microseconds=1)


class MisfirePolicy(StrEnum):
    """What to fire for planned times that were missed (see the module docstring)."""

    SKIP = "skip"
    FIRE_ONCE = "fire_once"
    CATCH_UP = "catch_up"


class OverlapPolicy(StrEnum):
    """Whether a new fire may start while the schedule's previous job is unfinished."""

    ALLOW = "allow"
    SKIP_IF_RUNNING = "skip_if_running"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """When a schedule fires: a cron expression in a time zone, or a fixed interval."""

    cron: str | None = None
    timezone: str = "UTC"
    interval_seconds: int | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    misfire_policy: MisfirePolicy = MisfirePolicy.SKIP
    catch_up_limit: int = 100
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW
    _cron: CronExpr | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval_seconds is None):
            raise InvalidSchedule("give exactly one of cron or interval_seconds")
        if self.cron is not None:
            object.__setattr__(self, "_cron", parse_cron(self.cron, self.timezone))
        else:
            load_timezone(self.timezone)  # still shown in previews, so it must be real
            interval = self.interval_seconds
            if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
                raise InvalidSchedule(
                    f"interval_seconds must be a whole number of seconds > 0, got {interval!r}"
                )
        for name in ("start_at", "end_at"):
            value = getattr(self, name)
            if value is not None:
                if not isinstance(value, datetime) or value.utcoffset() is None:
                    raise InvalidSchedule(f"{name} must be a time-zone-aware datetime")
                object.__setattr__(self, name, value.astimezone(UTC))
        if self.start_at and self.end_at and self.end_at < self.start_at:
            raise InvalidSchedule("end_at is before start_at")
        for name, enum in (("misfire_policy", MisfirePolicy), ("overlap_policy", OverlapPolicy)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                allowed = ", ".join(m.value for m in enum)
                raise InvalidSchedule(f"{name} must be one of {allowed}, got {value!r}") from None
        limit = self.catch_up_limit
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidSchedule(f"catch_up_limit must be an integer, got {limit!r}")
        if not 1 <= limit <= MAX_CATCH_UP_LIMIT:
            raise InvalidSchedule(f"catch_up_limit must be 1..{MAX_CATCH_UP_LIMIT}, got {limit}")

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone (for showing fire times locally)."""
        return load_timezone(self.timezone)


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What the relay should do for one schedule at `now`."""

    fire_times: tuple[datetime, ...]
    """Planned times to create a job for now, ascending, UTC; each keys its job (`fire_key`)."""
    missed: int
    """Due planned times that were late (now - t >= grace); a lower bound if `truncated`."""
    dropped: int
    """Late times that get no job of their own (under fire_once, the one job stands for them)."""
    next_fire_at: datetime | None
    """The next planned time to store, strictly after now; None once the schedule has ended."""
    overlap_skipped: int = 0
    """Fire times not fired because of overlap_policy skip_if_running."""
    truncated: bool = False
    """The backlog was too long to walk; `missed` and `dropped` are lower bounds."""


def fire_key(schedule_id: object, fire_at: datetime) -> str:
    """The idempotency key of a schedule's job for one planned time: schedule:<id>:<UTC time>."""
    t = _utc(fire_at, "fire_at")
    stamp = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        stamp += f".{t.microsecond:06d}"
    return f"schedule:{schedule_id}:{stamp}Z"


def next_fire(
    spec: ScheduleSpec, after: datetime, *, anchor: datetime | None = None
) -> datetime | None:
    """The first planned time strictly after `after` (UTC), or None if the schedule has ended."""
    return next(_fires(spec, _utc(after, "after"), anchor), None)


def next_fires(
    spec: ScheduleSpec, after: datetime, count: int, *, anchor: datetime | None = None
) -> list[datetime]:
    """Up to `count` planned times strictly after `after` (the API's preview), UTC."""
    if not 0 <= count <= MAX_PREVIEW:
        raise ValueError(f"count must be 0..{MAX_PREVIEW}")
    return list(islice(_fires(spec, _utc(after, "after"), anchor), count))


def plan_fires(
    spec: ScheduleSpec,
    next_fire_at: datetime | None,
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
    running: bool = False,
    anchor: datetime | None = None,
) -> FirePlan:
    """Which planned times to fire at `now`, given the stored `next_fire_at` and the policies."""
    now = _utc(now, "now")
    if grace < timedelta(0):
        raise ValueError("grace must be >= 0")
    if next_fire_at is None:
        return FirePlan((), 0, 0, None)
    first = _utc(next_fire_at, "next_fire_at")
    if first > now:
        return FirePlan((), 0, 0, first)
    if not _in_bounds(spec, first):
        # A stale stored time outside the bounds: fire nothing, just move on.
        return FirePlan((), 0, 0, next_fire(spec, now, anchor=anchor))

    # Fire times are whole, distinct seconds, so at most this many due times are on time.
    on_time_max = int(grace.total_seconds()) + 1
    keep = on_time_max + (
        spec.catch_up_limit if spec.misfire_policy is MisfirePolicy.CATCH_UP else 1
    )
    due, tail, truncated = _due(spec, first, now, keep, anchor)
    on_time = [t for t in tail if now - t < grace]
    late = [t for t in tail if now - t >= grace]
    missed = due - len(on_time)

    fires: list[datetime]
    if missed == 0:
        fires = on_time
    elif spec.misfire_policy is MisfirePolicy.SKIP:
        fires = on_time or late[-1:]
    elif spec.misfire_policy is MisfirePolicy.FIRE_ONCE:
        fires = late[-1:] + on_time
    else:
        fires = late[-spec.catch_up_limit :] + on_time
    dropped = missed - (len(fires) - len(on_time))

    overlap_skipped = 0
    if spec.overlap_policy is OverlapPolicy.SKIP_IF_RUNNING:
        kept = [] if running else fires[-1:]
        overlap_skipped = len(fires) - len(kept)
        fires = kept

    return FirePlan(
        fire_times=tuple(fires),
        missed=missed,
        dropped=dropped,
        next_fire_at=next_fire(spec, now, anchor=anchor),
        overlap_skipped=overlap_skipped,
        truncated=truncated,
    )


def resume_next_fire(
    spec: ScheduleSpec,
    now: datetime,
    pending: datetime | None = None,
    *,
    anchor: datetime | None = None,
) -> datetime | None:
    """The next_fire_at to store when a paused schedule resumes at `now`.

    `pending` is the next_fire_at stored when it was paused (None if unknown or ended). The
    times missed while paused are owed only as far as the misfire policy says: the result is
    the earliest owed time (<= now, due at once) or, if nothing was missed, the next fire
    after now.
    """
    now = _utc(now, "now")
    if pending is None:
        return next_fire(spec, now, anchor=anchor)
    first = _utc(pending, "pending")
    if first > now:
        return first
    owed = spec.catch_up_limit if spec.misfire_policy is MisfirePolicy.CATCH_UP else 1
    # Start at the first in-bounds planned time at or after `pending`.
    start = next_fire(spec, first - _TINY, anchor=anchor)
    if start is None or start > now:
        return start
    _, tail, _ = _due(spec, start, now, owed, anchor)
    return tail[0]


# --- internals -----------------------------------------------------------------------------


def _utc(value: datetime, name: str) -> datetime:
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be time-zone-aware")
    return value.astimezone(UTC)


def _in_bounds(spec: ScheduleSpec, t: datetime) -> bool:
    return (spec.start_at is None or t >= spec.start_at) and (
        spec.end_at is None or t <= spec.end_at
    )


def _fires(spec: ScheduleSpec, after: datetime, anchor: datetime | None) -> Iterator[datetime]:
    """Planned times strictly after `after`, ascending, within the bounds."""
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - _TINY
    if spec._cron is not None:
        raw = spec._cron.fires_after(after)
    else:
        raw = _interval_fires(spec, after, anchor)
    for t in raw:
        if spec.end_at is not None and t > spec.end_at:
            return
        yield t


def _interval_fires(
    spec: ScheduleSpec, after: datetime, anchor: datetime | None
) -> Iterator[datetime]:
    assert spec.interval_seconds is not None
    step = timedelta(seconds=spec.interval_seconds)
    base = _utc(anchor, "anchor") if anchor is not None else spec.start_at or EPOCH
    k = 0 if after < base else (after - base) // step + 1
    t = base + k * step
    while True:
        yield t
        t += step


def _due(
    spec: ScheduleSpec, first: datetime, now: datetime, keep: int, anchor: datetime | None
) -> tuple[int, list[datetime], bool]:
    """Count the planned times in [first, now] (first is one) and return the last `keep`.

    Returns (count, tail ascending, truncated). `first` must be a planned time <= now.
    """
    if spec.interval_seconds is not None:
        return _due_interval(spec, first, now, keep)
    tail: deque[datetime] = deque([first], maxlen=keep)
    count = 1
    fires = _fires(spec, first, anchor)
    for t in fires:
        if t > now:
            return count, list(tail), False
        tail.append(t)
        count += 1
        if count >= _MAX_SCAN:
            break
    else:
        return count, list(tail), False
    # Too long to walk. Look in a window that ends at now, as wide as the stretch we walked,
    # widening it until it holds `keep` planned times or reaches what we walked.
    walked_to = tail[-1]
    width = max(walked_to - first, timedelta(seconds=1))
    while True:
        lo = max(walked_to, now - width)
        recent = list(_until(_fires(spec, lo, anchor), now))
        if lo == walked_to:  # contiguous with the walk: the count is exact after all
            tail.extend(recent)
            return count + len(recent), list(tail), False
        if len(recent) >= keep:
            return count + len(recent), recent[-keep:], True
        width *= 2


def _until(fires: Iterator[datetime], now: datetime) -> Iterator[datetime]:
    for t in fires:
        if t > now:
            return
        yield t


def _due_interval(
    spec: ScheduleSpec, first: datetime, now: datetime, keep: int
) -> tuple[int, list[datetime], bool]:
    # `first` is on the grid; the grid is first + k * step. Exact arithmetic, no walking.
    assert spec.interval_seconds is not None
    step = timedelta(seconds=spec.interval_seconds)
    last_k = (now - first) // step
    if spec.end_at is not None:
        last_k = min(last_k, (spec.end_at - first) // step)
    count = last_k + 1
    start_k = max(0, count - keep)
    return count, [first + k * step for k in range(start_k, count)], False


def spec_from_row(row: Mapping[str, Any]) -> ScheduleSpec:
    """The schedule a ``schedules`` row stores; InvalidSchedule if it is no longer valid
    (e.g. its time zone left tzdata)."""
    interval = row["interval_seconds"]
    return ScheduleSpec(
        cron=row["cron"],
        timezone=row["timezone"],
        interval_seconds=int(interval) if interval is not None else None,
        start_at=row["start_at"],
        end_at=row["end_at"],
        misfire_policy=row["misfire_policy"],
        catch_up_limit=row["catch_up_limit"],
        overlap_policy=row["overlap_policy"],
    )
