"""Policy.execute: retries, status matching, per-attempt timeouts and circuit breakers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import textwrap

import pytest
import yaml

from daprlite.config.resources import Resource
from daprlite.resiliency import (
    CircuitOpenError,
    CodedFailure,
    Policy,
    Resiliency,
    ResiliencyTimeoutError,
)
from daprlite.resiliency.retry import Backoff, RetrySpec


def app_policy(spec: str, app: str = "billing") -> Policy:
    doc = yaml.safe_load(textwrap.dedent(spec))
    res = Resiliency.build([Resource("Resiliency", "res", "dapr.io/v1alpha1", doc, "r.yaml")])
    return res.app(app)


class Op:
    """An operation that raises the queued outcomes in turn, then returns "ok"."""

    def __init__(self, *outcomes: BaseException | float) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.cancelled = 0

    async def __call__(self) -> str:
        self.calls += 1
        if not self.outcomes:
            return "ok"
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        try:
            await asyncio.sleep(outcome)  # a slow attempt that then succeeds
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return "slow"


def always(exc: Exception, n: int = 50) -> Op:
    return Op(*[exc] * n)


RETRY_3 = """
policies:
  retries: {r: {duration: 10ms, maxRetries: 3}}
targets:
  apps: {billing: {retry: r}}
"""


async def test_retries_up_to_max_then_raises_the_last_failure() -> None:
    failures = [ConnectionError(f"try {i}") for i in range(10)]
    op = Op(*failures)
    with pytest.raises(ConnectionError) as info:
        await app_policy(RETRY_3).execute(op)
    assert op.calls == 4  # the first attempt and three retries
    assert info.value is failures[3]


async def test_returns_the_result_once_an_attempt_succeeds() -> None:
    op = Op(ConnectionError(), ConnectionError())
    assert await app_policy(RETRY_3).execute(op) == "ok"
    assert op.calls == 3


async def test_zero_retries_runs_once_and_is_a_noop() -> None:
    policy = app_policy(
        "policies: {retries: {r: {maxRetries: 0}}}\ntargets: {apps: {billing: {retry: r}}}"
    )
    assert not policy.has_retries and policy.is_noop
    op = always(ConnectionError())
    with pytest.raises(ConnectionError):
        await policy.execute(op)
    assert op.calls == 1


async def test_unlimited_retries_go_on_until_success() -> None:
    policy = app_policy(
        "policies: {retries: {r: {duration: 1ms, maxRetries: -1}}}\n"
        "targets: {apps: {billing: {retry: r}}}"
    )
    op = always(ConnectionError(), 12)
    assert await policy.execute(op) == "ok"
    assert op.calls == 13


async def test_retries_wait_between_attempts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="daprlite.resiliency")
    policy = app_policy(
        "policies: {retries: {r: {duration: 30ms, maxRetries: 2}}}\n"
        "targets: {apps: {billing: {retry: r}}}"
    )
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def op() -> str:
        times.append(loop.time())
        if len(times) < 3:
            raise CodedFailure("secret body", http_status=503)
        return "ok"

    assert await policy.execute(op) == "ok"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2 and all(gap >= 0.025 for gap in gaps)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert "HTTP 503" in retries[0].getMessage()
    assert "secret body" not in caplog.text  # failure messages may carry response bodies


def test_constant_backoff_waits_duration_until_retries_run_out() -> None:
    backoff = Backoff(RetrySpec("r", duration=2.0, max_retries=3))
    assert [backoff.next_delay() for _ in range(5)] == [2.0, 2.0, 2.0, None, None]


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        (0.5, [0.5, 0.75, 1.125, 1.6875, 2.0, 2.0]),  # no jitter: x1.5, capped at maxInterval
        (0.0, [0.25, 0.375, 0.5625, 0.84375, 1.0, 1.0]),  # -50 %
        (1.0, [0.75, 1.125, 1.6875, 2.0, 2.0, 2.0]),  # +50 %, still capped
    ],
)
def test_exponential_backoff_grows_with_jitter_and_cap(rand: float, expected: list[float]) -> None:
    spec = RetrySpec("r", policy="exponential", max_interval=2.0, max_retries=-1)
    backoff = Backoff(spec, rng=lambda: rand)
    assert [backoff.next_delay() for _ in expected] == pytest.approx(expected)


def test_backoff_stops_when_max_elapsed_would_be_exceeded() -> None:
    now = [0.0]
    spec = RetrySpec("r", duration=4.0, max_retries=-1, max_elapsed=10.0)
    backoff = Backoff(spec, clock=lambda: now[0])
    assert backoff.next_delay() == 4.0
    now[0] = 6.0
    assert backoff.next_delay() == 4.0  # 6 + 4 is still within 10
    now[0] = 6.5
    assert backoff.next_delay() is None  # 6.5 + 4 is not


MATCHING = """
policies:
  retries:
    r: {duration: 1ms, maxRetries: 3,
        matching: {httpStatusCodes: "429,502-504", gRPCStatusCodes: "4,14"}}
targets:
  apps: {billing: {retry: r}}
"""


@pytest.mark.parametrize(
    ("failure", "calls"),
    [
        (CodedFailure(http_status=503), 4),
        (CodedFailure(http_status=429), 4),
        (CodedFailure(http_status=404), 1),
        (CodedFailure(http_status=500), 1),
        (CodedFailure(grpc_code=14), 4),
        (CodedFailure(grpc_code=5), 1),
        (CodedFailure(http_status=503, grpc_code=14), 4),
        (CodedFailure(http_status=503, grpc_code=5), 1),
        (CodedFailure(), 4),  # no status: nothing to match against
        (ConnectionResetError(), 4),  # not a coded failure: always retried
        (ResiliencyTimeoutError("x", 1.0), 4),
    ],
)
async def test_matching_decides_which_statuses_are_retried(failure: Exception, calls: int) -> None:
    op = always(failure)
    with pytest.raises(type(failure)):
        await app_policy(MATCHING).execute(op)
    assert op.calls == calls


async def test_matching_of_one_kind_leaves_the_other_kind_retried() -> None:
    policy = app_policy(
        "policies: {retries: {r: {duration: 1ms, maxRetries: 2,"
        " matching: {gRPCStatusCodes: '14'}}}}\ntargets: {apps: {billing: {retry: r}}}"
    )
    op = always(CodedFailure(http_status=404))
    with pytest.raises(CodedFailure):
        await policy.execute(op)
    assert op.calls == 3


async def test_not_retried_failure_keeps_its_payload() -> None:
    response = object()
    with pytest.raises(CodedFailure) as info:
        await app_policy(MATCHING).execute(always(CodedFailure(http_status=404, payload=response)))
    assert info.value.payload is response
    assert info.value.http_status == 404


async def test_retriable_predicate_further_restricts_retries() -> None:
    policy = app_policy(RETRY_3)

    def sidecar_unreachable(exc: Exception) -> bool:
        return isinstance(exc, ConnectionError)

    coded = always(CodedFailure(grpc_code=14))
    with pytest.raises(CodedFailure):
        await policy.execute(coded, retriable=sidecar_unreachable)
    assert coded.calls == 1
    refused = Op(ConnectionRefusedError(), ConnectionRefusedError())
    assert await policy.execute(refused, retriable=sidecar_unreachable) == "ok"
    assert refused.calls == 3


TIMEOUT = """
policies:
  timeouts: {t: 50ms}
  retries: {r: {duration: 1ms, maxRetries: 2}}
targets:
  apps:
    billing: {timeout: t}
    retried: {timeout: t, retry: r}
"""


async def test_timeout_cancels_the_attempt_and_raises_a_timeout_error() -> None:
    op = Op(5.0)
    with pytest.raises(ResiliencyTimeoutError) as info:
        await app_policy(TIMEOUT).execute(op)
    assert isinstance(info.value, TimeoutError)
    assert op.cancelled == 1
    assert "app 'billing'" in str(info.value)


async def test_timeout_bounds_each_attempt_not_the_whole_call() -> None:
    policy = app_policy(
        "policies: {timeouts: {t: 100ms}, retries: {r: {duration: 1ms, maxRetries: 2}}}\n"
        "targets: {apps: {billing: {timeout: t, retry: r}}}"
    )
    calls = 0

    async def op() -> str:
        # Each attempt stays well within 100 ms; the three together do not.
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.04)
        if calls < 3:
            raise ConnectionError()
        return "ok"

    assert await policy.execute(op) == "ok"
    assert calls == 3


async def test_timed_out_attempt_is_retried() -> None:
    op = Op(5.0, 5.0)
    assert await app_policy(TIMEOUT, "retried").execute(op) == "ok"
    assert (op.calls, op.cancelled) == (3, 2)


async def test_operation_own_timeout_error_is_not_relabelled() -> None:
    with pytest.raises(TimeoutError) as info:
        await app_policy(TIMEOUT).execute(Op(TimeoutError("upstream")))
    assert not isinstance(info.value, ResiliencyTimeoutError)


BREAKER = """
policies:
  timeouts: {t: 20ms}
  retries: {r: {duration: 1ms, maxRetries: 10, matching: {httpStatusCodes: "503"}}}
  circuitBreakers: {cb: {timeout: 50ms, trip: consecutiveFailures >= 3}}
targets:
  apps:
    billing: {circuitBreaker: cb}
    retried: {retry: r, circuitBreaker: cb}
    timed: {timeout: t, circuitBreaker: cb}
"""


async def open_breaker(policy: Policy) -> None:
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await policy.execute(always(ConnectionError()))


async def test_breaker_opens_on_trip_and_rejects_without_calling() -> None:
    policy = app_policy(BREAKER)
    await open_breaker(policy)
    op = Op()
    with pytest.raises(CircuitOpenError) as info:
        await policy.execute(op)
    assert op.calls == 0
    assert "'cb'" in str(info.value) and "app 'billing'" in str(info.value)


async def test_breaker_half_opens_after_timeout_and_closes_on_success() -> None:
    policy = app_policy(BREAKER)
    await open_breaker(policy)
    await asyncio.sleep(0.06)
    assert await policy.execute(Op()) == "ok"
    # Closed again: failures are counted afresh, calls pass.
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await policy.execute(always(ConnectionError()))
    assert await policy.execute(Op()) == "ok"


async def test_breaker_reopens_when_the_half_open_trial_fails() -> None:
    policy = app_policy(BREAKER)
    await open_breaker(policy)
    await asyncio.sleep(0.06)
    with pytest.raises(ConnectionError):
        await policy.execute(always(ConnectionError()))
    op = Op()
    with pytest.raises(CircuitOpenError):
        await policy.execute(op)
    assert op.calls == 0


async def test_open_breaker_ends_retries_and_keeps_the_last_failure_as_cause() -> None:
    policy = app_policy(BREAKER, "retried")
    last = CodedFailure(http_status=503, payload="resp")
    op = Op(CodedFailure(http_status=503), CodedFailure(http_status=503), last)
    with pytest.raises(CircuitOpenError) as info:
        await policy.execute(op)
    assert op.calls == 3
    assert info.value.__cause__ is last


async def test_failure_that_is_not_retried_still_counts_for_the_breaker() -> None:
    policy = app_policy(BREAKER, "retried")
    for _ in range(3):
        op = always(CodedFailure(http_status=404))
        with pytest.raises(CodedFailure):
            await policy.execute(op)
        assert op.calls == 1
    with pytest.raises(CircuitOpenError):
        await policy.execute(Op())


async def test_timeouts_count_as_breaker_failures() -> None:
    policy = app_policy(BREAKER, "timed")
    for _ in range(3):
        with pytest.raises(ResiliencyTimeoutError):
            await policy.execute(Op(5.0))
    with pytest.raises(CircuitOpenError):
        await policy.execute(Op())


async def test_breaker_state_is_shared_by_every_call_to_the_target() -> None:
    doc = yaml.safe_load(textwrap.dedent(BREAKER))
    res = Resiliency.build([Resource("Resiliency", "res", "dapr.io/v1alpha1", doc, "r.yaml")])
    await open_breaker(res.app("billing"))
    with pytest.raises(CircuitOpenError):
        await res.app("billing").execute(Op())
    assert await res.app("timed").execute(Op()) == "ok"  # its own breaker, still closed


async def test_cancelled_call_is_not_a_breaker_failure() -> None:
    policy = app_policy(BREAKER)
    for _ in range(5):
        task = asyncio.create_task(policy.execute(Op(5.0)))
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await policy.execute(Op()) == "ok"
