"""``middleware.http.ratelimit``: a per-client token bucket in front of an API or an app.

A handler of ``spec.httpPipeline`` (requests to the Dapr HTTP API; the client
is the caller's address) or ``spec.appHttpPipeline`` (every call to the app but
health probes; the client is the calling app's id for an invocation, this
sidecar's own app id for deliveries and discovery, which therefore share one
bucket). Each client has a bucket that holds up to ``burst`` tokens and
refills at ``maxRequestsPerSecond``; a request takes one token, and a request
that finds none is refused with 429 ``ERR_RATE_LIMITED`` and a ``Retry-After``
header (whole seconds until a token is back). Buckets live in memory, per
sidecar. A client idle long enough for its bucket to be full again is
forgotten (a fresh bucket is the same thing), and at most
``maxTrackedClients`` buckets are kept: past that the least recently seen
client is forgotten first.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from daprlite import errors
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest

_log = logging.getLogger("daprlite.component.middleware")


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """Component metadata of ``middleware.http.ratelimit`` (names case-insensitive)."""

    maxRequestsPerSecond: float = setting(
        required=True,
        doc="Requests per second each client may make, sustained (Dapr's name). A positive "
        "number; fractions such as 0.5 allow one request every two seconds.",
    )
    burst: int | None = setting(
        None,
        doc="How many requests a client may make at once after being idle (the bucket size). "
        "Default: maxRequestsPerSecond rounded up, and at least 1.",
    )
    maxTrackedClients: int = setting(
        10_000,
        doc="Most clients tracked at once; past it the least recently seen is forgotten.",
    )

    def __post_init__(self) -> None:
        rate = self.maxRequestsPerSecond
        if not isinstance(rate, float) or not math.isfinite(rate) or rate <= 0:
            raise MetadataError("maxRequestsPerSecond", f"expected a positive number, got {rate!r}")
        if self.burst is not None and self.burst < 1:
            raise MetadataError("burst", f"expected a whole number of at least 1, got {self.burst}")
        if self.maxTrackedClients < 1:
            raise MetadataError(
                "maxTrackedClients", f"expected at least 1, got {self.maxTrackedClients}"
            )

    @property
    def capacity(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.maxRequestsPerSecond))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # clock reading when ``tokens`` was last brought up to date


class RateLimitMiddleware:
    """Token buckets by client; refuses with 429 past the limit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # injectable so tests drive time without sleeping
        self._name = ""
        self.settings: RateLimitSettings | None = None
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen first

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(RateLimitSettings, metadata.properties)
        self._name = metadata.name
        _log.info(
            "rate limit %s: %g requests per second per client, burst %d",
            self._name,
            self.settings.maxRequestsPerSecond,
            self.settings.capacity,
        )

    @property
    def tracked_clients(self) -> int:
        return len(self._buckets)

    async def handle(self, request: MiddlewareRequest) -> MiddlewareRequest:
        settings = self.settings
        assert settings is not None, "init() was not called"
        rate, capacity = settings.maxRequestsPerSecond, settings.capacity
        now = self._clock()
        self._forget_idle(now, capacity / rate)
        bucket = self._buckets.pop(request.client, None)
        if bucket is None:
            bucket = _Bucket(float(capacity), now)
            while len(self._buckets) >= settings.maxTrackedClients:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        self._buckets[request.client] = bucket  # now the most recently seen
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return request
        wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        raise MiddlewareRejection(
            errors.RATE_LIMITED.http_status,
            errors.RATE_LIMITED.code,
            f"too many requests: the limit is {settings.maxRequestsPerSecond:g} per second "
            f"(burst {capacity}) per client, set by middleware {self._name!r}; "
            f"retry in {wait}s",
            headers=(("retry-after", str(wait)),),
        )

    def _forget_idle(self, now: float, refill_seconds: float) -> None:
        """Drop clients whose buckets have refilled completely: they behave as new ones."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated < refill_seconds:
                return
            self._buckets.popitem(last=False)

    async def close(self) -> None:
        self._buckets.clear()
