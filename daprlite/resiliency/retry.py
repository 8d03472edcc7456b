"""Retry policies: which failures to retry, and how long to wait between attempts.

``spec.policies.retries.<name>`` becomes a :class:`RetrySpec`; ``Policy.execute``
asks it whether a failure may be retried (:meth:`RetrySpec.should_retry`) and
draws the waits from a fresh :class:`Backoff` per call.

- ``constant`` waits ``duration`` (default 5 s) every time.
- ``exponential`` starts at 500 ms and grows by half per retry; each wait is
  jittered by ±50 % and capped at ``maxInterval`` (default 60 s).
- ``maxRetries`` counts retries, not attempts: 3 means up to 4 attempts;
  -1 retries without limit, 0 never retries.
- ``matching.httpStatusCodes`` / ``matching.gRPCStatusCodes`` are allow-lists
  (``"429,500-504"``) for failures that carry a status (:class:`CodedFailure`).
  A list that is absent or empty allows every status of its kind, and a
  failure without a status (a refused connection, a timeout) is always retried.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from daprlite.resiliency.errors import CodedFailure

HTTP_STATUS_RANGE = (100, 599)
GRPC_CODE_RANGE = (0, 16)


@dataclass(frozen=True, slots=True)
class CodeRanges:
    """A parsed allow-list of status codes, such as ``"429,500-504"``."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    @classmethod
    def parse(cls, text: str, valid: tuple[int, int]) -> CodeRanges | None:
        """Parse the comma-separated list; ``None`` (allow all) when it is empty.

        Raises ``ValueError`` naming the bad entry.
        """
        ranges: list[tuple[int, int]] = []
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue  # "500," is fine, as in Dapr
            bounds = entry.split("-")
            if len(bounds) > 2:
                raise ValueError(f"{entry!r} is not a code or a range such as 500-504")
            try:
                lo, hi = int(bounds[0]), int(bounds[-1])
            except ValueError:
                raise ValueError(f"{entry!r} is not a code or a range such as 500-504") from None
            for code in (lo, hi):
                if not valid[0] <= code <= valid[1]:
                    raise ValueError(
                        f"{entry!r}: {code} is outside the valid codes {valid[0]}-{valid[1]}"
                    )
            if hi < lo:
                raise ValueError(f"{entry!r}: the range ends before it starts")
            ranges.append((lo, hi))
        return cls(tuple(ranges)) if ranges else None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """One retry policy, with Dapr's defaults."""

    name: str
    policy: str = "constant"  # "constant" | "exponential"
    duration: float = 5.0
    initial_interval: float = 0.5
    multiplier: float = 1.5
    randomization: float = 0.5
    max_interval: float = 60.0
    max_retries: int = -1
    # Stop retrying once this much time has passed since the first attempt; only the
    # built-in policies set it (Dapr's initialization retries give up after 10 s).
    max_elapsed: float | None = None
    http_statuses: CodeRanges | None = None  # None: retry every HTTP status
    grpc_codes: CodeRanges | None = None  # None: retry every gRPC code

    def should_retry(self, exc: Exception) -> bool:
        """Whether ``matching`` allows retrying this failure.

        A :class:`CodedFailure` is retried only when every status it carries is on
        the allow-list of its kind; anything else is always retried.
        """
        if not isinstance(exc, CodedFailure):
            return True
        http_ok = (
            exc.http_status is None
            or self.http_statuses is None
            or exc.http_status in self.http_statuses
        )
        grpc_ok = (
            exc.grpc_code is None or self.grpc_codes is None or exc.grpc_code in self.grpc_codes
        )
        return http_ok and grpc_ok

    def backoff(self, rng: Callable[[], float] = random.random) -> Backoff:
        return Backoff(self, rng)


class Backoff:
    """The waits of one ``execute`` call, in order; ``None`` means stop retrying."""

    def __init__(
        self,
        spec: RetrySpec,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._rng = rng
        self._clock = clock
        self._started = clock()
        self._current = spec.initial_interval
        self.retries = 0

    def next_delay(self) -> float | None:
        spec = self._spec
        if 0 <= spec.max_retries <= self.retries:
            return None
        if spec.policy == "exponential":
            spread = spec.randomization * self._current
            delay = self._current - spread + 2 * spread * self._rng()
            delay = min(delay, spec.max_interval)
            self._current = min(self._current * spec.multiplier, spec.max_interval)
        else:
            delay = spec.duration
        elapsed = self._clock() - self._started
        if spec.max_elapsed is not None and elapsed + delay > spec.max_elapsed:
            return None
        self.retries += 1
        return delay
