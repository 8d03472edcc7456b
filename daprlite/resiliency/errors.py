"""The exceptions that cross the resiliency boundary.

Blocks wrap each outbound call (service invocation, a state operation, a
publish, a delivery to the app) in ``Policy.execute``. The operation tells the
policy about a failed response by raising :class:`CodedFailure`; the policy
tells the block why it gave up by raising :class:`ResiliencyTimeoutError` or
:class:`CircuitOpenError` (or by letting the operation's last exception
through). Blocks map these onto the error catalogue; nothing here knows about
HTTP or gRPC beyond the status numbers.
"""

from __future__ import annotations


class CodedFailure(Exception):
    """A failed call that came back with a status: an HTTP status, a gRPC code, or both.

    ``retries.<name>.matching`` decides from these numbers whether the failure
    is retried. ``payload`` is the caller's own object (usually the failed
    response) so that, once retries are exhausted, the block can return that
    response to its caller unchanged.
    """

    def __init__(
        self,
        message: str = "",
        *,
        http_status: int | None = None,
        grpc_code: int | None = None,
        payload: object = None,
    ) -> None:
        super().__init__(message or _describe(http_status, grpc_code))
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.payload = payload


def _describe(http_status: int | None, grpc_code: int | None) -> str:
    parts = []
    if http_status is not None:
        parts.append(f"HTTP status {http_status}")
    if grpc_code is not None:
        parts.append(f"gRPC code {grpc_code}")
    return "call failed with " + (" and ".join(parts) if parts else "no status")


class ResiliencyTimeoutError(TimeoutError):
    """One attempt ran longer than the policy's timeout and was cancelled."""

    def __init__(self, policy: str, timeout: float) -> None:
        super().__init__(f"{policy}: the attempt timed out after {timeout:g}s")
        self.policy = policy
        self.timeout = timeout


class CircuitOpenError(Exception):
    """The target's circuit breaker refused the call; the operation was not run.

    ``state`` is ``"open"`` (tripped, waiting for its timeout) or
    ``"half-open"`` (trial calls are in flight and the limit is reached).
    """

    def __init__(self, breaker: str, target: str, state: str) -> None:
        why = (
            "is open"
            if state == "open"
            else "is half-open and already has its maximum of trial requests"
        )
        super().__init__(f"circuit breaker {breaker!r} for {target} {why}")
        self.breaker = breaker
        self.target = target
        self.state = state
