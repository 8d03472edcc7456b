"""The circuit breaker state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from daprlite.resiliency import CircuitOpenError
from daprlite.resiliency.breaker import BreakerSpec, CircuitBreaker
from daprlite.resiliency.expression import Expression


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(
    clock: Clock,
    trip: str = "consecutiveFailures > 2",
    max_requests: int = 1,
    interval: float = 0.0,
    timeout: float = 60.0,
) -> CircuitBreaker:
    spec = BreakerSpec("cb", max_requests, interval, timeout, Expression.parse(trip))
    return CircuitBreaker(spec, "app 'billing'", clock=clock)


def fail(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        cb.record_failure(cb.admit())


def succeed(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        cb.record_success(cb.admit())


def test_counters_follow_successes_and_failures() -> None:
    cb = breaker(Clock())
    succeed(cb, 2)
    fail(cb)
    succeed(cb)
    fail(cb, 2)
    c = cb.counts
    assert (c.requests, c.total_successes, c.total_failures) == (6, 3, 3)
    assert (c.consecutive_successes, c.consecutive_failures) == (0, 2)
    assert cb.state == "closed"


def test_opens_when_trip_is_true_and_refuses_calls() -> None:
    cb = breaker(Clock())
    fail(cb, 2)
    assert cb.state == "closed"
    fail(cb)  # consecutiveFailures == 3 > 2
    assert cb.state == "open"
    with pytest.raises(CircuitOpenError) as info:
        cb.admit()
    assert info.value.state == "open"
    assert "'cb'" in str(info.value) and "app 'billing'" in str(info.value)


def test_success_in_between_resets_consecutive_failures() -> None:
    cb = breaker(Clock())
    fail(cb, 2)
    succeed(cb)
    fail(cb, 2)
    assert cb.state == "closed"


def test_half_open_after_timeout_then_success_closes() -> None:
    clock = Clock()
    cb = breaker(clock, timeout=30.0)
    fail(cb, 3)
    clock.now += 29.9
    assert cb.state == "open"
    clock.now += 0.2
    assert cb.state == "half-open"
    succeed(cb)
    assert cb.state == "closed"
    assert cb.counts.requests == 0  # a new generation starts with fresh counters


def test_half_open_failure_reopens_for_another_timeout() -> None:
    clock = Clock()
    cb = breaker(clock, timeout=30.0)
    fail(cb, 3)
    clock.now += 31
    fail(cb)
    assert cb.state == "open"
    clock.now += 29
    assert cb.state == "open"
    clock.now += 2
    assert cb.state == "half-open"


def test_half_open_admits_max_requests_and_needs_that_many_successes() -> None:
    clock = Clock()
    cb = breaker(clock, timeout=1.0, max_requests=2)
    fail(cb, 3)
    clock.now += 2
    first, second = cb.admit(), cb.admit()
    with pytest.raises(CircuitOpenError) as info:
        cb.admit()
    assert info.value.state == "half-open"
    cb.record_success(first)
    assert cb.state == "half-open"
    cb.record_success(second)
    assert cb.state == "closed"


def test_cancelled_trial_call_gives_its_half_open_slot_back() -> None:
    clock = Clock()
    cb = breaker(clock, timeout=1.0)
    fail(cb, 3)
    clock.now += 2
    cb.release(cb.admit())
    succeed(cb)
    assert cb.state == "closed"


def test_result_of_a_call_from_an_earlier_generation_is_ignored() -> None:
    clock = Clock()
    cb = breaker(clock, timeout=1.0)
    slow = cb.admit()
    fail(cb, 3)
    assert cb.state == "open"
    cb.record_success(slow)  # started while closed; must not count in the open state
    clock.now += 2
    assert cb.state == "half-open"
    cb.record_failure(slow)
    assert cb.state == "half-open"


def test_interval_restarts_closed_counts() -> None:
    clock = Clock()
    cb = breaker(clock, interval=10.0)
    fail(cb, 2)
    clock.now += 11
    fail(cb, 2)
    assert cb.state == "closed"
    assert cb.counts.consecutive_failures == 2
    fail(cb)
    assert cb.state == "open"


def test_zero_interval_never_restarts_counts() -> None:
    clock = Clock()
    cb = breaker(clock, trip="totalFailures >= 3")
    fail(cb, 2)
    clock.now += 1e6
    succeed(cb)
    fail(cb)
    assert cb.state == "open"


def test_trip_that_cannot_be_evaluated_does_not_trip() -> None:
    cb = breaker(Clock(), trip="totalFailures / totalSuccesses > 1")
    fail(cb, 10)  # totalSuccesses == 0: division by zero
    assert cb.state == "closed"
    succeed(cb)
    fail(cb, 1)
    assert cb.state == "open"  # 11 / 1 > 1
