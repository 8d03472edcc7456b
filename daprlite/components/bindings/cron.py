"""``bindings.cron``: an input binding that triggers the app on a schedule.

The runtime's input-binding loop calls :meth:`CronBinding.read` once with a
handler that POSTs to the app; from then on a background task sleeps until
each instant the schedule (:mod:`daprlite.components.bindings._cron`) gives,
and delivers an empty event with the metadata ``timeZone`` and
``readTimeUTC``. Each next instant is computed from the schedule, never by
sleeping a fixed interval, so ticks do not drift. :meth:`close` stops the task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from daprlite.components.bindings._cron import Schedule, ScheduleError, parse_schedule
from daprlite.components.bindings.api import BindingEvent, DeliveryError, Handler
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting

_log = logging.getLogger("daprlite.component.bindings")

_RETRY_FIRST = 0.5  # seconds before retrying a failed delivery; doubles each time
_RETRY_MAX = 5.0
_MAX_SLEEP = 60.0  # re-read the wall clock at least this often, in case it was set
_LATE = 1.0  # a tick found due longer ago than this is skipped, not fired late


@dataclass(frozen=True, slots=True)
class CronSettings:
    """``bindings.cron`` metadata; names as in Dapr, matched case-insensitively."""

    schedule: str = setting(
        required=True,
        doc="When to fire: 5 cron fields (or 6 with leading seconds), '@every 15m', '@daily'..., "
        "optionally after 'CRON_TZ=Europe/Paris ' to read the fields in that time zone.",
    )


def _utc(instant: float) -> str:
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CronBinding:
    """Fires the app's handler at each scheduled instant; ``read`` starts, ``close`` stops."""

    def __init__(self) -> None:
        self.settings: CronSettings | None = None
        self._name = ""
        self._schedule: Schedule | None = None
        self._task: asyncio.Task[None] | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        self._name = metadata.name
        settings = decode(CronSettings, metadata.properties)
        try:  # in a thread: a CRON_TZ zone is read from the time-zone files
            self._schedule = await asyncio.to_thread(parse_schedule, settings.schedule)
        except ScheduleError as exc:
            raise MetadataError("schedule", f"{settings.schedule!r} {exc}") from None
        self.settings = settings
        _log.info(
            "binding %r: schedule %r (time zone %s)",
            self._name,
            settings.schedule,
            self._schedule.zone.name,
        )

    async def read(self, handler: Handler) -> None:
        if self._schedule is None:
            raise ComponentError(f"binding {self._name!r} is not initialised")
        if self._task is not None:
            raise ComponentError(f"binding {self._name!r} is already being read")
        self._task = asyncio.create_task(
            self._run(self._schedule, handler), name=f"{self._name}-cron"
        )

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _run(self, schedule: Schedule, handler: Handler) -> None:
        due = schedule.next_after(time.time())
        while due is not None:
            await self._sleep_until(due)
            following = schedule.next_after(due)
            event = BindingEvent(
                b"", {"timeZone": schedule.zone.name, "readTimeUTC": _utc(time.time())}
            )
            await self._deliver(handler, event, due, following)
            due = following
            now = time.time()
            if due is not None and due < now - _LATE:
                # The delivery outlasted one or more ticks. A burst of stale ticks helps
                # nobody: resume at the next one still ahead.
                _log.warning(
                    "binding %r: skipped the tick(s) due since %s: the previous "
                    "delivery was still running",
                    self._name,
                    _utc(due),
                )
                due = schedule.next_after(now)
        _log.warning("binding %r: the schedule has no more fire times", self._name)

    @staticmethod
    async def _sleep_until(instant: float) -> None:
        # Short sleeps against the wall clock: a clock change cannot make us fire
        # hours late, and we never fire before the instant.
        while (remaining := instant - time.time()) > 0:
            await asyncio.sleep(min(remaining, _MAX_SLEEP))

    async def _deliver(
        self, handler: Handler, event: BindingEvent, due: float, following: float | None
    ) -> None:
        """Deliver one tick's event, retrying failures until it succeeds or the next tick.

        A cron tick is a trigger, not data: once the next tick is due, that tick
        supersedes this one, so we stop retrying and log the missed tick rather
        than queue stale triggers.
        """
        delay = _RETRY_FIRST
        attempt = 0
        while True:
            attempt += 1
            try:
                await handler(event)
                if attempt > 1:
                    _log.info(
                        "binding %r: tick %s delivered on attempt %d",
                        self._name,
                        _utc(due),
                        attempt,
                    )
                return
            except DeliveryError as exc:
                _log.warning(
                    "binding %r: delivery of tick %s failed (attempt %d): %s",
                    self._name,
                    _utc(due),
                    attempt,
                    exc,
                )
            except Exception:
                # A bug in the delivery path must not stop the schedule: retry as above.
                _log.exception(
                    "binding %r: delivery of tick %s raised (attempt %d)",
                    self._name,
                    _utc(due),
                    attempt,
                )
            wait = delay if following is None else min(delay, following - time.time())
            if wait <= 0:
                break
            await asyncio.sleep(wait)
            if following is not None and time.time() >= following:
                break
            delay = min(delay * 2, _RETRY_MAX)
        _log.warning(
            "binding %r: tick %s was missed: not delivered after %d attempts, and the "
            "next tick is due",
            self._name,
            _utc(due),
            attempt,
        )
