"""``bindings.cron``: the schedule syntax, and real ticks delivered to a handler.

The parser tests pin a time zone (``TZ=UTC`` or a named zone) and a start
instant, so they do not depend on the machine's zone or clock; the real-time
tests run the binding for a few seconds with schedules of one or two seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from daprlite.components.bindings._cron import ScheduleError, parse_schedule
from daprlite.components.bindings.api import BindingEvent, DeliveryError, InputBinding
from daprlite.components.bindings.cron import CronBinding
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry

START = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday
PARIS = ZoneInfo("Europe/Paris")


def _ticks(schedule: str, start: datetime, count: int, zone: ZoneInfo | None = None) -> list[str]:
    """The next ``count`` fire times after ``start``, as ISO text in ``zone`` (default UTC)."""
    parsed = parse_schedule(schedule, now=start.timestamp())
    out, instant = [], start.timestamp()
    for _ in range(count):
        nxt = parsed.next_after(instant)
        assert nxt is not None
        instant = nxt
        out.append(datetime.fromtimestamp(instant, zone or UTC).isoformat())
    return out


def _utc(*times: str) -> list[str]:
    return [f"2025-01-{t}+00:00" for t in times]


# -- the schedule syntax -----------------------------------------------------------------


def test_five_fields_fire_at_the_given_minute_and_hour() -> None:
    assert _ticks("TZ=UTC 5 4 * * *", START, 2) == _utc("01T04:05:00", "02T04:05:00")


def test_steps_ranges_and_lists() -> None:
    assert _ticks("TZ=UTC */20 * * * *", START, 4) == _utc(
        "01T00:20:00", "01T00:40:00", "01T01:00:00", "01T01:20:00"
    )
    assert _ticks("TZ=UTC 0 9-17/4 * * *", START, 4) == _utc(
        "01T09:00:00", "01T13:00:00", "01T17:00:00", "02T09:00:00"
    )
    assert _ticks("TZ=UTC 0 8,12 * * *", START, 3) == _utc(
        "01T08:00:00", "01T12:00:00", "02T08:00:00"
    )
    # 'a/n' runs from a to the end of the field.
    assert _ticks("TZ=UTC 50/5 * * * *", START, 3) == _utc(
        "01T00:50:00", "01T00:55:00", "01T01:50:00"
    )


def test_month_and_day_names_in_any_case() -> None:
    assert _ticks("TZ=UTC 0 0 1 FEB,jul *", START, 2) == [
        "2025-02-01T00:00:00+00:00",
        "2025-07-01T00:00:00+00:00",
    ]
    # Weekdays Monday to Friday: from Wednesday 1 January, the 4th and 5th are the weekend.
    assert _ticks("TZ=UTC 0 9 * * Mon-fri", START, 4) == _utc(
        "01T09:00:00", "02T09:00:00", "03T09:00:00", "06T09:00:00"
    )


def test_seven_is_sunday_like_zero() -> None:
    assert _ticks("TZ=UTC 0 0 * * 7", START, 1) == _ticks("TZ=UTC 0 0 * * 0", START, 1)
    assert _ticks("TZ=UTC 0 0 * * 0", START, 1) == _utc("05T00:00:00")


def test_a_sixth_leading_field_is_seconds() -> None:
    assert _ticks("TZ=UTC */20 * * * * *", START, 3) == _utc(
        "01T00:00:20", "01T00:00:40", "01T00:01:00"
    )
    assert _ticks("TZ=UTC 30 0 12 * * *", START, 1) == _utc("01T12:00:30")


def test_both_day_fields_restricted_means_either_matches() -> None:
    # The 13th, or any Friday (3rd and 10th of January 2025), as in cron.
    assert _ticks("TZ=UTC 0 0 13 * fri", START, 3) == _utc(
        "03T00:00:00", "10T00:00:00", "13T00:00:00"
    )
    # With day-of-month '*', only the weekday restricts.
    assert _ticks("TZ=UTC 0 0 * * fri", START, 2) == _utc("03T00:00:00", "10T00:00:00")


@pytest.mark.parametrize(
    ("descriptor", "first", "second"),
    [
        ("@hourly", "2025-01-01T01:00:00", "2025-01-01T02:00:00"),
        ("@daily", "2025-01-02T00:00:00", "2025-01-03T00:00:00"),
        ("@midnight", "2025-01-02T00:00:00", "2025-01-03T00:00:00"),
        ("@weekly", "2025-01-05T00:00:00", "2025-01-12T00:00:00"),
        ("@monthly", "2025-02-01T00:00:00", "2025-03-01T00:00:00"),
        ("@yearly", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
        ("@annually", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_descriptors(descriptor: str, first: str, second: str) -> None:
    assert _ticks(f"TZ=UTC {descriptor}", START, 2) == [f"{first}+00:00", f"{second}+00:00"]


def test_every_adds_the_interval_to_the_whole_second() -> None:
    start = datetime(2025, 1, 1, 0, 0, 0, 400_000, tzinfo=UTC)
    assert _ticks("@every 15m", start, 2) == _utc("01T00:15:00", "01T00:30:00")
    assert _ticks("@every 1h30m", start, 1) == _utc("01T01:30:00")
    # As in Dapr: whole seconds, at least one.
    assert _ticks("@every 500ms", start, 2) == _utc("01T00:00:01", "01T00:00:02")


def test_cron_tz_prefix_reads_the_fields_in_that_zone() -> None:
    winter = _ticks("CRON_TZ=Europe/Paris 0 9 * * *", START, 1)
    assert winter == _utc("01T08:00:00")  # 09:00 in Paris is 08:00 UTC in winter
    summer = datetime(2025, 7, 1, tzinfo=UTC)
    assert _ticks("TZ=Europe/Paris 0 9 * * *", summer, 1) == ["2025-07-01T07:00:00+00:00"]
    assert _ticks("TZ=America/New_York 0 9 * * *", START, 1) == _utc("01T14:00:00")


def test_a_time_skipped_by_daylight_saving_fires_just_after_the_change() -> None:
    # Paris skips 02:00-03:00 on 30 March 2025: a 02:30 tick fires at 03:30 that day.
    start = datetime(2025, 3, 29, 12, tzinfo=PARIS)
    assert _ticks("CRON_TZ=Europe/Paris 30 2 * * *", start, 2, PARIS) == [
        "2025-03-30T03:30:00+02:00",
        "2025-03-31T02:30:00+02:00",
    ]


def test_a_repeated_hour_keeps_ticking_through_both_passes() -> None:
    # Paris repeats 02:00-03:00 on 26 October 2025: ticks continue in the second pass.
    start = datetime(2025, 10, 26, 1, 45, tzinfo=PARIS)
    assert _ticks("CRON_TZ=Europe/Paris */30 * * * *", start, 6, PARIS) == [
        "2025-10-26T02:00:00+02:00",
        "2025-10-26T02:30:00+02:00",
        "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00",
        "2025-10-26T03:00:00+01:00",
        "2025-10-26T03:30:00+01:00",
    ]


@pytest.fixture
def paris_local_time() -> Iterator[None]:
    """Make the process's local time zone Europe/Paris for one test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_without_a_zone_the_fields_are_in_local_time(paris_local_time: None) -> None:
    parsed = parse_schedule("0 9 * * *", now=START.timestamp())
    assert parsed.zone.name == "Local"
    assert _ticks("0 9 * * *", START, 1) == _utc("01T08:00:00")


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* 24 * * *", "outside 0-23"),
        ("* * 0 * *", "outside 1-31"),
        ("* * * 13 *", "outside 1-12"),
        ("* * * * 8", "outside 0-7"),
        ("*/0 * * * *", "positive integer"),
        ("*/x * * * *", "positive integer"),
        ("5-1 * * * *", "starts after it ends"),
        ("1,,2 * * * *", "expected a number"),
        ("* * * foo *", "name such as jan"),
        ("* * * * funday", "name such as sun"),
        ("@often", "unknown descriptor"),
        ("@daily 5", "unknown descriptor"),
        ("@every", "needs a duration"),
        ("@every soon", "needs a duration"),
        ("@every 0s", "positive duration"),
        ("@every -5m", "positive duration"),
        ("CRON_TZ=Mars/Olympus 0 9 * * *", "unknown time zone"),
        ("TZ=../../etc/passwd 0 9 * * *", "unknown time zone"),
        ("TZ= 0 9 * * *", "empty time zone"),
        ("CRON_TZ=UTC", "empty"),
        ("0 0 30 2 *", "never fires"),
    ],
)
async def test_invalid_schedule_fails_init_naming_schedule_and_the_reason(
    schedule: str, reason: str
) -> None:
    with pytest.raises(ScheduleError, match=reason):
        parse_schedule(schedule)
    binding = CronBinding()
    with pytest.raises(MetadataError, match=reason) as err:
        await binding.init(_meta(schedule))
    assert err.value.field == "schedule"


@pytest.mark.parametrize("props", [{}, {"schedule": "  "}, {"Schedule": ""}])
async def test_missing_schedule_fails_init_naming_it(props: dict[str, str]) -> None:
    meta = ComponentMetadata(name="tick", type="bindings.cron", properties=props)
    with pytest.raises(MetadataError) as err:
        await CronBinding().init(meta)
    assert err.value.field == "schedule"
    with pytest.raises(ScheduleError, match="empty"):
        parse_schedule(props.get("schedule", ""))


# -- the binding, in real time --------------------------------------------------------------


def _meta(schedule: str) -> ComponentMetadata:
    return ComponentMetadata(name="tick", type="bindings.cron", properties={"schedule": schedule})


@pytest.fixture
async def cron() -> AsyncIterator[CronBinding]:
    binding = CronBinding()
    try:
        yield binding
    finally:
        await binding.close()


def _read_time(event: BindingEvent) -> datetime:
    return datetime.fromisoformat(event.metadata["readTimeUTC"])


async def _wait_for(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.05)


def test_registered_type_resolves_to_the_binding() -> None:
    assert Registry().resolve("bindings.cron") is CronBinding


async def test_every_second_delivers_ticks_with_their_metadata(cron: CronBinding) -> None:
    assert isinstance(cron, InputBinding)
    await cron.init(_meta("@every 1s"))
    events: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bytes | None:
        events.append(event)
        return None

    started = datetime.now(UTC)
    await cron.read(handler)
    await _wait_for(lambda: len(events) >= 2, 3.5)
    assert len(events) >= 2
    for event in events:
        assert event.data == b""
        assert event.metadata["timeZone"] == "Local"
        assert event.metadata["readTimeUTC"].endswith("Z")
        assert started < _read_time(event) < datetime.now(UTC)
    first, second = _read_time(events[0]), _read_time(events[1])
    assert 0.7 < (second - first).total_seconds() < 1.5
    # No drift: ticks land on whole seconds, not "start time + n seconds".
    assert all(_read_time(e).microsecond < 500_000 for e in events)


async def test_cron_tz_zone_is_reported_in_the_events(cron: CronBinding) -> None:
    await cron.init(_meta("CRON_TZ=Europe/Paris * * * * * *"))
    events: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bytes | None:
        events.append(event)
        return None

    await cron.read(handler)
    await _wait_for(lambda: events, 2.5)
    assert events and events[0].metadata["timeZone"] == "Europe/Paris"


async def test_a_failed_delivery_is_retried_with_the_same_event(cron: CronBinding) -> None:
    await cron.init(_meta("@every 2s"))
    attempts: list[tuple[float, BindingEvent]] = []

    async def handler(event: BindingEvent) -> bytes | None:
        attempts.append((time.monotonic(), event))
        if len(attempts) <= 2:
            raise DeliveryError("app answered 500")
        return None

    await cron.read(handler)
    await _wait_for(lambda: len(attempts) >= 3, 4.5)
    assert len(attempts) >= 3
    (t1, first), (t2, second), (t3, third) = attempts[:3]
    # The third attempt is the same tick (same readTimeUTC), not the next one...
    assert first.metadata == second.metadata == third.metadata
    # ...after a backoff that doubles: 0.5s, then 1s.
    assert 0.4 < t2 - t1 < 0.9
    assert 0.9 < t3 - t2 < 1.4


async def test_a_tick_that_keeps_failing_is_given_up_when_the_next_is_due(
    cron: CronBinding, caplog: pytest.LogCaptureFixture
) -> None:
    await cron.init(_meta("@every 1s"))
    attempts: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bytes | None:
        attempts.append(event)
        raise DeliveryError("app is down")

    with caplog.at_level(logging.WARNING, logger="daprlite.component.bindings"):
        await cron.read(handler)
        await _wait_for(lambda: len({e.metadata["readTimeUTC"] for e in attempts}) >= 3, 4.5)
    ticks = [e.metadata["readTimeUTC"] for e in attempts]
    assert len(set(ticks)) >= 3  # the schedule went on
    assert max(ticks.count(t) for t in set(ticks)) <= 3  # each tick retried, then dropped
    assert ticks.count(ticks[0]) >= 2
    assert any(
        "was missed" in r.getMessage() and "'tick'" in r.getMessage() for r in caplog.records
    )


async def test_an_unexpected_handler_error_does_not_stop_the_schedule(cron: CronBinding) -> None:
    await cron.init(_meta("@every 1s"))
    calls: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bytes | None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("bug in the delivery path")
        return None

    await cron.read(handler)
    await _wait_for(lambda: len(calls) >= 2, 3.0)
    assert len(calls) >= 2


async def test_close_stops_the_ticks(cron: CronBinding) -> None:
    await cron.init(_meta("* * * * * *"))
    events: list[BindingEvent] = []

    async def handler(event: BindingEvent) -> bytes | None:
        events.append(event)
        return None

    await cron.read(handler)
    await _wait_for(lambda: events, 2.5)
    assert events
    await cron.close()
    seen = len(events)
    await asyncio.sleep(1.5)
    assert len(events) == seen


async def test_read_before_init_or_twice_is_refused(cron: CronBinding) -> None:
    async def handler(event: BindingEvent) -> bytes | None:
        return None

    with pytest.raises(ComponentError, match="not initialised"):
        await cron.read(handler)
    await cron.init(_meta("@hourly"))
    await cron.read(handler)
    with pytest.raises(ComponentError, match="already"):
        await cron.read(handler)
