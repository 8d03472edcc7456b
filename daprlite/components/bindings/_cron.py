"""Cron schedules for ``bindings.cron``: parse a schedule, compute its next fire time.

The binding (``bindings/cron.py``) asks :meth:`Schedule.next_after` for the
instant of each tick. The syntax is the one Dapr's cron binding accepts (the
robfig/cron parser with an optional seconds field and descriptors):

- 5 fields ``minute hour day-of-month month day-of-week``, or 6 with a leading
  ``second`` field; each field a comma list of ``*`` (or ``?``), ``n``,
  ``a-b``, with an optional step ``/n``; month names ``jan``-``dec`` and day
  names ``sun``-``sat`` (any case); day-of-week 0-6 from Sunday (7 is also
  Sunday here);
- as in cron, when both day fields are restricted (neither is ``*``) a day
  matches if *either* does; otherwise both must;
- descriptors ``@yearly``/``@annually``, ``@monthly``, ``@weekly``,
  ``@daily``/``@midnight``, ``@hourly``, and ``@every <Go duration>`` (whole
  seconds, at least 1s: shorter intervals become 1s as in Dapr);
- a leading ``CRON_TZ=<IANA zone>`` or ``TZ=<IANA zone>`` evaluates the fields
  in that zone; without one, in the machine's local time.

Daylight-saving changes: a schedule fires at every instant whose local wall
time matches. A wall time skipped by a spring-forward change fires at the same
offset after the change (02:30 becomes 03:30); one that occurs twice in autumn
fires twice.

We write our own (about 300 lines) rather than take croniter or cronsim: those
put the seconds field last or have none, and lack ``@every`` and Dapr's
day-of-month/day-of-week rule, so Dapr schedules would change meaning.
"""

from __future__ import annotations

import math
import re
import time
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta

from daprlite.components.metadata import parse_duration

LOCAL_ZONE_NAME = "Local"  # what Dapr (Go's time.Local) reports for the machine's zone
_SEARCH_YEARS = 5  # a schedule that matches nothing this far ahead never fires
_SECOND = timedelta(seconds=1)

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_WEEKDAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}


class ScheduleError(ValueError):
    """The schedule text is not valid; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),  # 7 = Sunday, folded onto 0
)


@dataclass(frozen=True, slots=True)
class Zone:
    """Where wall times are read: an IANA zone, or the machine's local time (``tz`` None)."""

    name: str
    tz: zoneinfo.ZoneInfo | None = None

    def wall(self, instant: float) -> datetime:
        """The naive local wall time of a POSIX instant (``fold`` set when ambiguous)."""
        if self.tz is None:
            return datetime.fromtimestamp(instant)
        return datetime.fromtimestamp(instant, self.tz).replace(tzinfo=None)

    def instants(self, wall: datetime) -> tuple[float, ...]:
        """The instants showing ``wall``: one, two (autumn repeat), or the shifted one (gap)."""
        found: list[float] = []
        for fold in (0, 1):
            local = wall.replace(fold=fold)
            instant = (local if self.tz is None else local.replace(tzinfo=self.tz)).timestamp()
            if self.wall(instant) == wall and instant not in found:
                found.append(instant)
        if not found:  # skipped by a spring-forward change: as many seconds after it
            local = wall.replace(fold=0)
            found.append((local if self.tz is None else local.replace(tzinfo=self.tz)).timestamp())
        return tuple(found)

    def shift(self, wall: datetime) -> timedelta:
        """How far the two readings of ``wall`` differ: the DST change around it, else 0."""
        first, second = (
            (wall.replace(fold=f) if self.tz is None else wall.replace(fold=f, tzinfo=self.tz))
            for f in (0, 1)
        )
        return timedelta(seconds=abs(second.timestamp() - first.timestamp()))


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed schedule. ``every`` > 0 for ``@every``; else the sets of matching values."""

    text: str
    zone: Zone
    every: int = 0
    seconds: frozenset[int] = frozenset()
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()  # 0 = Sunday
    days_star: bool = False  # day-of-month was `*`: the day fields are ANDed
    weekdays_star: bool = False

    def next_after(self, after: float) -> float | None:
        """The first fire instant strictly after ``after`` (POSIX seconds); None if never.

        Computed from the schedule, never from when the last tick ran, so ticks
        do not drift.
        """
        if self.every:
            # As Dapr: the next whole second, plus the interval.
            return math.floor(after) + self.every
        start = self.zone.wall(after).replace(microsecond=0)
        # In the first pass of an autumn repeat, walls a little behind `start` come
        # round again later: look back over them.
        wall = start - self.zone.shift(start)
        best: float | None = None
        horizon: datetime | None = None
        while True:
            found = self._next_wall(wall)
            if found is None or (horizon is not None and found > horizon):
                return best
            later = [i for i in self.zone.instants(found) if i > after]
            if later:
                best = min(later) if best is None else min(best, *later)
                if horizon is None:
                    # Around a DST change wall order and time order differ by at most
                    # the shift: matches within it may still come first.
                    horizon = found + self.zone.shift(found)
            wall = found + _SECOND

    def _day_matches(self, day: datetime) -> bool:
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.days_star or self.weekdays_star:
            return in_month and in_week
        return in_month or in_week

    def _next_wall(self, wall: datetime) -> datetime | None:
        """The first matching wall time at or after ``wall`` (naive, whole seconds)."""
        t = wall.replace(microsecond=0, fold=0)
        last_year = t.year + _SEARCH_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                t = datetime(t.year + t.month // 12, t.month % 12 + 1, 1)
            elif not self._day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
            elif t.second not in self.seconds:
                t += _SECOND
            else:
                return t
        return None


def parse_schedule(text: str, now: float | None = None) -> Schedule:
    """Parse ``text``; raise ScheduleError saying what is wrong.

    Loads time-zone files: call it off the event loop. A schedule that would
    never fire (``0 0 30 2 *``) is refused too, judged from ``now``.
    """
    spec = text.strip()
    zone = Zone(LOCAL_ZONE_NAME)
    match = re.match(r"(?:CRON_TZ|TZ)=(\S*)\s*", spec)
    if match:
        zone = _zone(match.group(1))
        spec = spec[match.end() :]
    if not spec:
        raise ScheduleError("is empty; expected e.g. '*/5 * * * *', '@daily' or '@every 1m'")
    if spec.startswith("@"):
        schedule = _descriptor(text, spec, zone)
    else:
        schedule = _fields(text, spec.split(), zone)
    if schedule.next_after(time.time() if now is None else now) is None:
        raise ScheduleError(f"never fires: no date matches it in the next {_SEARCH_YEARS} years")
    return schedule


def _zone(name: str) -> Zone:
    if not name:
        raise ScheduleError("has an empty time zone after 'CRON_TZ=' / 'TZ='")
    if name == LOCAL_ZONE_NAME:
        return Zone(name)
    try:
        return Zone(name, zoneinfo.ZoneInfo(name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(
            f"names an unknown time zone {name!r}; expected an IANA name such as "
            "'Europe/Paris' or 'UTC'"
        ) from None


def _descriptor(text: str, spec: str, zone: Zone) -> Schedule:
    word, _, arg = spec.partition(" ")
    word = word.lower()
    if word == "@every":
        try:
            seconds = parse_duration(arg.strip())
        except ValueError:
            raise ScheduleError(
                f"'@every' needs a duration such as '30s', '15m' or '1h30m', got {arg.strip()!r}"
            ) from None
        if seconds <= 0:
            raise ScheduleError(f"'@every' needs a positive duration, got {arg.strip()!r}")
        # As Dapr (robfig/cron): whole seconds, at least one.
        return Schedule(text, zone, every=max(1, int(seconds)))
    if word not in _DESCRIPTORS or arg.strip():
        known = ", ".join([*_DESCRIPTORS, "@every <duration>"])
        raise ScheduleError(f"has an unknown descriptor {spec!r}; expected one of {known}")
    return _fields(text, _DESCRIPTORS[word].split(), zone)


def _fields(text: str, parts: list[str], zone: Zone) -> Schedule:
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise ScheduleError(
            f"has {len(parts)} fields; expected 5 (minute hour day-of-month month "
            "day-of-week) or 6 with a leading second field"
        )
    parsed = [_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[5][0])
    return Schedule(
        text,
        zone,
        seconds=parsed[0][0],
        minutes=parsed[1][0],
        hours=parsed[2][0],
        days=parsed[3][0],
        months=parsed[4][0],
        weekdays=weekdays,
        days_star=parsed[3][1],
        weekdays_star=parsed[5][1],
    )


def _field(text: str, spec: _Field) -> tuple[frozenset[int], bool]:
    """The values of one field, and whether it was an unrestricted ``*`` / ``?``."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(
                    f"{spec.name} field {text!r}: the step after '/' must be a positive "
                    f"integer, got {step_text!r}"
                )
            step = int(step_text)
        if span in ("*", "?"):
            low, high = spec.low, spec.high if spec.name != "day-of-week" else 6
            star = star or step == 1  # as robfig: '*/2' restricts the field
        else:
            first, dash, last = span.partition("-")
            low = _value(first, spec, text)
            # 'a/n' means from a to the end of the range, every n.
            high = _value(last, spec, text) if dash else (spec.high if slash else low)
            if low > high:
                raise ScheduleError(
                    f"{spec.name} field {text!r}: range {span!r} starts after it ends"
                )
        values.update(range(low, high + 1, step))
    return frozenset(values), star


def _value(word: str, spec: _Field, field_text: str) -> int:
    if word.isdigit():
        value = int(word)
    elif spec.names and word.lower() in spec.names:
        return spec.names[word.lower()]
    else:
        expected = "a number" + (
            " or a name such as " + next(iter(spec.names)) if spec.names else ""
        )
        raise ScheduleError(f"{spec.name} field {field_text!r}: expected {expected}, got {word!r}")
    if not spec.low <= value <= spec.high:
        raise ScheduleError(
            f"{spec.name} field {field_text!r}: {value} is outside {spec.low}-{spec.high}"
        )
    return value
