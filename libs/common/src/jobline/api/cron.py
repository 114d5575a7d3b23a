"""The grammar of a cron expression as one regular expression, for the OpenAPI schema.

It states what the gateway accepts, field by field: 5 fields (minute hour day-of-month month
day-of-week) or 6 (seconds first), or a macro; each field a list of ``*``, values or
ascending ranges, each with an optional ``/step``; names for months and weekdays (any case);
``L``/``LW`` for the day of month; ``5L`` and ``1#3`` for the day of week. What it cannot
state: a day of month that no chosen month has (``30 2``) is refused too.
"""

from __future__ import annotations

from functools import cache
from typing import Final
from zoneinfo import available_timezones

_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)
_DAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# zoneinfo names that are not places (machine-dependent or placeholders): refused.
_NOT_PLACES: Final = frozenset({"localtime", "posixrules", "Factory"})
_MACROS: Final = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


def _numbers(lo: int, hi: int) -> str:
    """A compact regex for the numbers ``lo..hi`` (single digits may have a leading 0)."""
    parts = []
    for tens in range(lo // 10, hi // 10 + 1):
        first, last = max(lo, tens * 10) % 10, min(hi, tens * 10 + 9) % 10
        units = str(first) if first == last else f"[{first}-{last}]"
        parts.append(f"0?{units}" if tens == 0 else f"{tens}{units}")
    return _alternatives(parts)


def _alternatives(spellings: list[str]) -> str:
    return "(?:" + "|".join(spellings) + ")" if len(spellings) > 1 else spellings[0]


@cache
def field(
    lo: int, hi: int, names: tuple[tuple[int, str], ...] = (), specials: str | None = None
) -> str:
    """One field: a comma-separated list of terms over the values ``lo..hi``: ``*``, a value,
    or an ascending range, each with an optional step; names may stand for values."""
    named = dict(names)

    def at_least(start: int) -> str:
        words = [_any_case(named[v]) for v in range(start, hi + 1) if v in named]
        return _alternatives([_numbers(start, hi), *words])

    def spelled(value: int) -> str:
        return _alternatives(
            [_numbers(value, value), *([_any_case(named[value])] if value in named else [])]
        )

    value = at_least(lo)
    ranges = "|".join(f"{spelled(v)}-{at_least(v)}" for v in range(lo, hi + 1))
    step = "(?:/[1-9][0-9]{0,5})?"
    alternatives = f"(?:\\*|{ranges}|{value}){step}"
    if specials:
        alternatives = f"{specials}|{alternatives}"
    term = f"(?:{alternatives})"
    return f"{term}(?:,{term})*"


def cron_pattern() -> str:
    """The whole expression (surrounding and repeated blanks allowed, as the gateway reads it)."""
    second = minute = field(0, 59)
    hour = field(0, 23)
    dom = f"(?:LW?|{field(1, 31)})"
    month = field(1, 12, tuple(enumerate(_MONTHS, start=1)))
    names = _alternatives([_any_case(d) for d in _DAYS])
    # 5L: the last Friday; 1#3, MON#3: the third Monday.
    nth = f"{_numbers(0, 7)}L|(?:{_numbers(0, 7)}|{names})#[1-5]"
    dow = field(0, 7, tuple(enumerate(_DAYS)), nth)
    fields = f"(?:{second}\\s+)?{minute}\\s+{hour}\\s+{dom}\\s+{month}\\s+{dow}"
    macros = "@" + _alternatives([_any_case(m) for m in _MACROS])
    return f"^\\s*(?:{macros}|{fields})\\s*$"


@cache
def time_zone_names() -> tuple[str, ...]:
    """The IANA names the gateway accepts (this machine's tz database less non-places)."""
    return tuple(sorted(available_timezones() - _NOT_PLACES))
