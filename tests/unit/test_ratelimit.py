"""``middleware.http.ratelimit``: per-client token buckets, burst, Retry-After, eviction.

Time is an injected clock the tests move by hand, so nothing sleeps and
nothing depends on how fast the machine is.
"""

from __future__ import annotations

import pytest

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest
from daprlite.components.middleware.ratelimit import RateLimitMiddleware


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def limiter(clock: Clock, **props: str) -> RateLimitMiddleware:
    mw = RateLimitMiddleware(clock=clock)
    await mw.init(ComponentMetadata("limit", "middleware.http.ratelimit", properties=props))
    return mw


def req(client: str = "orders") -> MiddlewareRequest:
    return MiddlewareRequest("POST", "/pay", "a=1", (("x-k", "v"),), client)


async def passes(mw: RateLimitMiddleware, client: str = "orders") -> bool:
    try:
        out = await mw.handle(req(client))
    except MiddlewareRejection:
        return False
    assert out == req(client)  # passed on unchanged
    return True


async def test_a_client_gets_burst_requests_at_once_then_429_with_retry_after() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="2", burst="3")
    assert [await passes(mw) for _ in range(3)] == [True, True, True]
    with pytest.raises(MiddlewareRejection) as err:
        await mw.handle(req())
    assert err.value.status == 429 and err.value.error_code == "ERR_RATE_LIMITED"
    assert err.value.headers == (("retry-after", "1"),)
    assert "2 per second" in err.value.message and "burst 3" in err.value.message
    assert "'limit'" in err.value.message


async def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="2", burst="2")
    assert [await passes(mw) for _ in range(3)] == [True, True, False]
    clock.now += 0.25  # half a token
    assert not await passes(mw)
    clock.now += 0.25  # one token
    assert await passes(mw)
    assert not await passes(mw)
    clock.now += 10  # refills only up to the burst
    assert [await passes(mw) for _ in range(3)] == [True, True, False]


async def test_a_fractional_rate_allows_one_request_per_period_and_says_when_to_retry() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="0.2")  # burst defaults to 1
    assert await passes(mw)
    with pytest.raises(MiddlewareRejection) as err:
        await mw.handle(req())
    assert err.value.headers == (("retry-after", "5"),)
    clock.now += 4.9
    assert not await passes(mw)
    clock.now += 0.2
    assert await passes(mw)


async def test_burst_defaults_to_the_rate_rounded_up() -> None:
    clock = Clock()
    mw = await limiter(clock, maxrequestspersecond="2.5")  # names are case-insensitive
    assert [await passes(mw) for _ in range(4)] == [True, True, True, False]


async def test_each_client_has_its_own_bucket() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="1", burst="1")
    assert await passes(mw, "orders")
    assert not await passes(mw, "orders")
    assert await passes(mw, "billing")
    assert await passes(mw, "")  # an anonymous client is one more client


async def test_clients_idle_until_their_bucket_is_full_are_forgotten() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="10", burst="5")  # full again after 0.5 s
    for client in ("a", "b", "c"):
        assert await passes(mw, client)
    clock.now += 0.3
    assert await passes(mw, "a")
    assert mw.tracked_clients == 3
    clock.now += 0.25  # b and c idle 0.55 s: full again; a idle 0.25 s
    assert await passes(mw, "d")
    assert mw.tracked_clients == 2  # a and d
    # Forgetting changed nothing for b: a fresh bucket holds the whole burst, as its would.
    assert [await passes(mw, "b") for _ in range(6)] == [True] * 5 + [False]


async def test_past_max_tracked_clients_the_least_recently_seen_is_forgotten_first() -> None:
    clock = Clock()
    mw = await limiter(clock, maxRequestsPerSecond="1", burst="1", maxTrackedClients="2")
    assert await passes(mw, "a")
    assert await passes(mw, "b")
    assert not await passes(mw, "a")  # a is now the most recently seen
    assert await passes(mw, "c")  # evicts b, not a
    assert mw.tracked_clients == 2
    assert not await passes(mw, "a")  # a's empty bucket was kept
    assert await passes(mw, "b")  # b starts afresh


@pytest.mark.parametrize(
    ("props", "field", "problem"),
    [
        ({}, "maxRequestsPerSecond", "is required"),
        ({"maxRequestsPerSecond": ""}, "maxRequestsPerSecond", "is required"),
        ({"maxRequestsPerSecond": "ten"}, "maxRequestsPerSecond", "a number"),
        ({"maxRequestsPerSecond": "0"}, "maxRequestsPerSecond", "positive"),
        ({"maxRequestsPerSecond": "-3"}, "maxRequestsPerSecond", "positive"),
        ({"maxRequestsPerSecond": "inf"}, "maxRequestsPerSecond", "positive"),
        ({"maxRequestsPerSecond": "nan"}, "maxRequestsPerSecond", "positive"),
        ({"maxRequestsPerSecond": "1", "burst": "0"}, "burst", "at least 1"),
        ({"maxRequestsPerSecond": "1", "burst": "1.5"}, "burst", "an integer"),
        ({"maxRequestsPerSecond": "1", "maxTrackedClients": "0"}, "maxTrackedClients", "1"),
    ],
)
async def test_bad_metadata_is_refused_naming_the_key(
    props: dict[str, str], field: str, problem: str
) -> None:
    with pytest.raises(MetadataError) as err:
        await limiter(Clock(), **props)
    assert err.value.field == field
    assert problem in err.value.problem
