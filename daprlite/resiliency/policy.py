"""A resolved policy for one target, and the loop that applies it to a call.

Blocks get a :class:`Policy` from ``Resiliency`` (``app``, ``component_outbound``,
``component_inbound``, ``builtin``) and wrap the outbound call in
:meth:`Policy.execute`. The layers nest as in Dapr::

    retry( circuit breaker( timeout( operation ) ) )

so the timeout bounds each attempt, a timed-out attempt is a breaker failure
and is retried, and an open breaker ends the retries at once (retrying against
an open breaker could only fail again).

A failure is counted by the breaker whether or not ``matching`` lets it be
retried: in Dapr the status filter acts in the retry loop, outside the breaker,
so a 404 that is not retried still counts towards ``consecutiveFailures``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from daprlite.resiliency.breaker import CircuitBreaker
from daprlite.resiliency.errors import CircuitOpenError, CodedFailure, ResiliencyTimeoutError
from daprlite.resiliency.retry import RetrySpec

log = logging.getLogger("daprlite.resiliency")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Policy:
    """Timeout, retry and circuit breaker of one target; any of them may be absent."""

    name: str  # the target, for logs and errors: "app 'billing'"
    timeout: float | None = None  # seconds per attempt
    retry: RetrySpec | None = None
    breaker: CircuitBreaker | None = None  # shared by every call to the target

    @property
    def has_retries(self) -> bool:
        """True when a failed attempt may be repeated (callers must keep the request body)."""
        return self.retry is not None and self.retry.max_retries != 0

    @property
    def is_noop(self) -> bool:
        return self.timeout is None and not self.has_retries and self.breaker is None

    async def execute(
        self,
        op: Callable[[], Awaitable[T]],
        retriable: Callable[[Exception], bool] | None = None,
    ) -> T:
        """Run ``op`` under the policy and return its result.

        ``op`` reports failure by raising. ``retriable``, when given, must also
        approve an exception before it is retried. When the retries are used
        up, or a failure may not be retried, the last exception propagates.
        Raises :class:`ResiliencyTimeoutError` when the last attempt timed out and
        :class:`CircuitOpenError` when the breaker refused the call.
        """
        if self.is_noop:
            return await op()
        backoff = self.retry.backoff() if self.retry is not None else None
        last: Exception | None = None
        while True:
            try:
                return await self._attempt(op)
            except CircuitOpenError as exc:
                # A failed attempt of this call may have tripped the breaker; keep it
                # as the cause so its status and payload are not lost.
                raise exc from last
            except Exception as exc:
                last = exc
                if backoff is None or self.retry is None:
                    raise
                if not self.retry.should_retry(exc) or (retriable and not retriable(exc)):
                    raise
                delay = backoff.next_delay()
                if delay is None:
                    raise
                log.debug(
                    "%s: attempt %d failed (%s); retrying in %.3fs",
                    self.name,
                    backoff.retries,
                    _describe(exc),
                    delay,
                )
            await asyncio.sleep(delay)

    async def _attempt(self, op: Callable[[], Awaitable[T]]) -> T:
        breaker = self.breaker
        if breaker is None:
            return await self._timed(op)
        generation = breaker.admit()
        try:
            result = await self._timed(op)
        except Exception:
            breaker.record_failure(generation)
            raise
        except BaseException:
            # Cancelled from outside: says nothing about the target.
            breaker.release(generation)
            raise
        breaker.record_success(generation)
        return result

    async def _timed(self, op: Callable[[], Awaitable[T]]) -> T:
        if self.timeout is None:
            return await op()
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                return await op()
        except TimeoutError:
            if deadline.expired():
                raise ResiliencyTimeoutError(self.name, self.timeout) from None
            raise  # the operation's own timeout, not ours


def _describe(exc: Exception) -> str:
    """Name a failure for the log without its message, which may carry a response body."""
    if isinstance(exc, CodedFailure):
        codes = []
        if exc.http_status is not None:
            codes.append(f"HTTP {exc.http_status}")
        if exc.grpc_code is not None:
            codes.append(f"gRPC code {exc.grpc_code}")
        return ", ".join(codes) or type(exc).__name__
    return type(exc).__name__
