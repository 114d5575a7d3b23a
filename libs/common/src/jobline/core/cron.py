"""Cron expressions in an IANA time zone: parsing, and the fire times they produce.

The field matching is done by `cronsim` (Healthchecks.io's cron engine), chosen over `croniter`
because it is small, typed, tested against Debian cron's semantics, and its maintainer keeps it
current; croniter has a long record of DST bugs and an uncertain maintenance story. We use
cronsim only to enumerate *matching readings*; how a reading becomes an instant across a
daylight-saving change is decided here, so the rule is ours and is the same for 5- and 6-field
expressions.

Two kinds of expression, as in Debian cron:

* **Wall-clock** — neither the minute nor the hour field starts with ``*`` (``30 2 * * *``,
  ``0 9-17 * * MON-FRI``, ``15 30 2 * * *``). The expression names local times of day.
  - A local time that does not exist (spring forward) is **shifted** to the first instant after
    the gap: ``30 2 * * *`` in Europe/Berlin fires at 03:00 CEST on the last Sunday of March.
    Several missing times collapse into that one fire.
  - A local time that occurs twice (fall back) fires **once**, at its first occurrence
    (``fold=0``): ``30 2 * * *`` fires at 02:30 CEST, not again at 02:30 CET.
* **Elapsed-time** — the minute or the hour field starts with ``*`` (``* * * * *``,
  ``*/15 * * * *``, ``0 */2 * * *``, every 6-field ``* * * * * *``). The expression is a cadence:
  it fires at every real instant whose local reading matches. The skipped hour has no readings,
  so it has no fires (no real time passed in it); the repeated hour is read twice, so it fires
  in both passes, keeping the real interval between fires (an every-second schedule fires every
  second through both transitions).

Fire times are whole seconds. Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

from jobline.core.errors import InvalidSchedule

__all__ = ["CronExpr", "load_timezone", "parse_cron"]

_FIELDS_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELDS_6 = ("second", *_FIELDS_5)
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L, LW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, with L and #n",
}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Names zoneinfo can load that do not mean a place: machine-dependent or placeholders.
_NOT_PLACES = frozenset({"localtime", "posixrules", "Factory"})
_CHECK_FROM = datetime(2000, 1, 1)  # naive on purpose: a wall-clock reading


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_PLACES


@lru_cache(maxsize=512)
def load_timezone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name`, or raise InvalidSchedule naming it."""
    if not isinstance(name, str) or name not in _zone_names():
        raise InvalidSchedule(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'"
        )
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class CronExpr:
    """A validated cron expression bound to its time zone."""

    expr: str
    timezone: str
    zone: ZoneInfo
    wall_clock: bool

    def fires_after(self, after: datetime) -> Iterator[datetime]:
        """Yield the fire times strictly after `after`, ascending, as UTC instants."""
        after = after.astimezone(UTC)
        fires: Iterator[datetime]
        if self.timezone == "UTC":
            fires = (
                n.replace(tzinfo=UTC) for n in _readings(self.expr, after.replace(tzinfo=None))
            )
        elif self.wall_clock:
            fires = self._wall_clock_fires(after)
        else:
            fires = self._elapsed_fires(after)
        last = after
        for fire in fires:
            if fire > last:
                last = fire
                yield fire

    # cronsim is used only on naive readings (no DST logic of its own: its tz-aware mode steps
    # hours in UTC and misses fires after a 30-minute shift such as Australia/Lord_Howe's).
    # The mapping from reading to instant is monotone, so starting from `after`'s own reading
    # misses nothing; readings that map to <= the previous fire are dropped by the caller.

    def _wall_clock_fires(self, after: datetime) -> Iterator[datetime]:
        for naive in _readings(self.expr, after.astimezone(self.zone).replace(tzinfo=None)):
            instants = _instants(naive, self.zone)
            yield instants[0] if instants else _gap_end(naive, self.zone)

    def _elapsed_fires(self, after: datetime) -> Iterator[datetime]:
        # Every occurrence of every matching reading; a reading in a gap has none. Occurrences
        # in the second pass of a repeated hour come out of naive order, so hold them in a heap
        # until no later reading can map before them.
        local = after.astimezone(self.zone)
        start = local.replace(tzinfo=None)
        instants = _instants(start, self.zone)
        if len(instants) == 2 and local.fold == 0:
            # `after` is in the first pass: readings a fold-width lower come again after it.
            start -= instants[1] - instants[0]
        pending: list[datetime] = []
        for naive in _readings(self.expr, start):
            found = _instants(naive, self.zone)
            for instant in found:
                heapq.heappush(pending, instant)
            if found:
                while pending and pending[0] <= found[0]:
                    yield heapq.heappop(pending)
        while pending:  # pragma: no cover - only when cronsim gives up after 50 years
            yield heapq.heappop(pending)


def _readings(expr: str, after: datetime) -> Iterator[datetime]:
    """Naive readings matching `expr`, strictly after the naive `after`."""
    try:
        yield from CronSim(expr, after)
    except StopIteration:  # pragma: no cover - cronsim: "no match within 50 years"
        return


def _instants(naive: datetime, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The UTC instants whose local reading is `naive`: none (gap), one, or two (fold)."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return (first.astimezone(UTC),)
    u0, u1 = first.astimezone(UTC), second.astimezone(UTC)
    if u0.astimezone(zone).replace(tzinfo=None) != naive:
        return ()  # in a gap (fold=0 and fold=1 read it with the offsets either side)
    return (u0, u1)


def _gap_end(naive: datetime, zone: ZoneInfo) -> datetime:
    """The first instant after the spring-forward gap that `naive` falls in."""
    # fold=1 reads it with the post-transition offset (an instant before the transition),
    # fold=0 with the pre-transition one (an instant after it): search between.
    lo = int(naive.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(naive.replace(tzinfo=zone, fold=0).timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).replace(tzinfo=None) > naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def parse_cron(expr: str, timezone: str = "UTC") -> CronExpr:
    """Validate a cron expression (5 fields, or 6 with leading seconds) and an IANA time zone."""
    zone = load_timezone(timezone)
    if not isinstance(expr, str):
        raise InvalidSchedule("cron expression must be a string")
    text = " ".join(expr.split())
    text = _MACROS.get(text.lower(), text)
    parts = text.split()
    if len(parts) not in (5, 6):
        raise InvalidSchedule(
            f"invalid cron expression {expr!r}: expected 5 fields (minute hour day-of-month "
            f"month day-of-week) or 6 with a leading seconds field, got {len(parts)}"
        )
    names = _FIELDS_5 if len(parts) == 5 else _FIELDS_6
    parts = [_single_ranges(part) for part in parts]
    text = " ".join(parts)
    try:
        it = CronSim(text, _CHECK_FROM)
    except CronSimError as exc:
        raise InvalidSchedule(_field_message(expr, parts, names, str(exc))) from exc
    except (ValueError, IndexError) as exc:  # cronsim's parser lets a few of these escape
        raise InvalidSchedule(f"invalid cron expression {expr!r}: {exc}") from exc
    try:
        next(it)
    except StopIteration:
        raise InvalidSchedule(f"cron expression {expr!r} never fires") from None
    minute, hour = parts[-5], parts[-4]
    wall_clock = not minute.startswith("*") and not hour.startswith("*")
    return CronExpr(expr=text, timezone=timezone, zone=zone, wall_clock=wall_clock)


_SINGLE_RANGE = re.compile(r"^(\w+)-\1/\d+$")


def _single_ranges(part: str) -> str:
    # cronsim reads a one-value range with a step ("5-5/2") as "5/2", i.e. 5 to the end of the
    # field; cron means just 5. Rewrite such terms so the two agree.
    return ",".join(
        term.split("-", 1)[0] if _SINGLE_RANGE.match(term) else term for term in part.split(",")
    )


def _field_message(expr: str, parts: list[str], names: tuple[str, ...], error: str) -> str:
    # cronsim says "Bad minute", "Bad day-of-week", ...: point at the offending field's text.
    for index, name in enumerate(names):
        if error == f"Bad {name}":
            return (
                f"invalid cron expression {expr!r}: bad {name} field {parts[index]!r} "
                f"(allowed: {_ALLOWED[name]}, with , - / *)"
            )
    return f"invalid cron expression {expr!r}: {error}"
