"""Circuit breakers: one shared state machine per target.

A policy that names a circuit breaker runs every attempt through the target's
:class:`CircuitBreaker` (one per app id, one per component and direction),
inside the retry loop and outside the per-attempt timeout, as Dapr does. The
state machine follows the one Dapr builds on (sony/gobreaker):

- **closed**: calls pass; after each failure the ``trip`` expression is
  evaluated over the counters and, when true, the breaker opens. With
  ``interval`` > 0 the counters restart every interval.
- **open**: calls are refused with :class:`CircuitOpenError`, without running
  the operation, until ``timeout`` has passed; then the breaker is half-open.
- **half-open**: at most ``maxRequests`` calls pass in total. Any failure
  re-opens the breaker; ``maxRequests`` consecutive successes close it (with
  the default ``maxRequests: 1``, the first success closes it).

Every state change starts a new *generation* with fresh counters; a call that
finishes after the generation it started in has ended is not counted, so a slow
call from before a trip cannot close or re-open the breaker by accident.
Breakers live on one event loop and need no locks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from daprlite.resiliency.errors import CircuitOpenError
from daprlite.resiliency.expression import Expression

log = logging.getLogger("daprlite.resiliency")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
DEFAULT_TRIP = Expression.parse("consecutiveFailures > 5")


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    """``spec.policies.circuitBreakers.<name>``: the template every target's breaker copies."""

    name: str
    max_requests: int = 1
    interval: float = 0.0  # closed-state counter reset period; 0 = never
    timeout: float = 60.0  # open -> half-open delay
    trip: Expression = DEFAULT_TRIP


@dataclass(slots=True)
class Counts:
    """The counters a ``trip`` expression can read, for the current generation."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def as_env(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "totalSuccesses": self.total_successes,
            "totalFailures": self.total_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "consecutiveFailures": self.consecutive_failures,
        }


class CircuitBreaker:
    """The live breaker of one target. Call :meth:`admit` before an attempt, then one
    of :meth:`record_success`, :meth:`record_failure` or :meth:`release` with the
    generation :meth:`admit` returned."""

    def __init__(
        self, spec: BreakerSpec, target: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.spec = spec
        self.target = target
        self._clock = clock
        self._state = CLOSED
        self._generation = 0
        self._counts = Counts()
        self._expiry = self._closed_expiry(clock())

    @property
    def state(self) -> str:
        return self._current_state(self._clock())

    @property
    def counts(self) -> Counts:
        self._current_state(self._clock())
        return replace(self._counts)

    def admit(self) -> int:
        """Count a new call and return its generation, or raise :class:`CircuitOpenError`."""
        state = self._current_state(self._clock())
        if state == OPEN or (
            state == HALF_OPEN and self._counts.requests >= self.spec.max_requests
        ):
            raise CircuitOpenError(self.spec.name, self.target, state)
        self._counts.requests += 1
        return self._generation

    def record_success(self, generation: int) -> None:
        now = self._clock()
        state = self._current_state(now)
        if generation != self._generation:
            return
        c = self._counts
        c.total_successes += 1
        c.consecutive_successes += 1
        c.consecutive_failures = 0
        if state == HALF_OPEN and c.consecutive_successes >= self.spec.max_requests:
            self._set_state(CLOSED, now)

    def record_failure(self, generation: int) -> None:
        now = self._clock()
        state = self._current_state(now)
        if generation != self._generation:
            return
        c = self._counts
        c.total_failures += 1
        c.consecutive_failures += 1
        c.consecutive_successes = 0
        if state == HALF_OPEN or (state == CLOSED and self.spec.trip.evaluate(c.as_env())):
            self._set_state(OPEN, now)

    def release(self, generation: int) -> None:
        """Forget a call that was cancelled from outside: it proves nothing about the
        target, and in half-open it must give its trial slot back or the breaker
        would refuse every call from then on."""
        self._current_state(self._clock())
        if generation == self._generation and self._counts.requests > 0:
            self._counts.requests -= 1

    def _closed_expiry(self, now: float) -> float | None:
        return now + self.spec.interval if self.spec.interval > 0 else None

    def _current_state(self, now: float) -> str:
        if self._expiry is not None and self._expiry <= now:
            if self._state == CLOSED:
                self._new_generation(self._closed_expiry(now))
            elif self._state == OPEN:
                self._set_state(HALF_OPEN, now)
        return self._state

    def _set_state(self, state: str, now: float) -> None:
        previous, self._state = self._state, state
        if state == CLOSED:
            expiry = self._closed_expiry(now)
        elif state == OPEN:
            expiry = now + self.spec.timeout
        else:
            expiry = None
        self._new_generation(expiry)
        log.info(
            "circuit breaker %r for %s changed from %s to %s",
            self.spec.name,
            self.target,
            previous,
            state,
        )

    def _new_generation(self, expiry: float | None) -> None:
        self._generation += 1
        self._counts = Counts()
        self._expiry = expiry
