"""Calls from a block into its component, under the component's resiliency policy.

The state, bindings and secrets blocks validate a request, then reach the
component through :func:`call_component` with the policy of the target
``components.<name>.outbound`` (``Resiliency.component_outbound``), and map
what comes out onto their catalogue errors.

Failures reported by the component are of two kinds:

- a *transient* failure (the backend is unreachable, the driver failed, the
  attempt ran out of time) is retried as the policy allows and counts towards
  the circuit breaker;
- a *refusal*, the caller's own mistake that the component reports (a stale
  or malformed etag, an unsupported operation, bad request metadata), is
  answered at once: the same request cannot succeed on a retry, and the
  component did answer, so the breaker must not open because of it.
  ``Policy.execute`` counts every exception of its operation as a breaker
  failure, so a refusal leaves the operation as its *result* and is raised
  again outside the policy. For the breaker that attempt is a success.

When the policy gives up without a component error — the last attempt timed
out, or the breaker is open — ``ResiliencyTimeoutError`` or
``CircuitOpenError`` reaches the block; :func:`failure_reason` words it for the
block's catalogue message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from daprlite.components.errors import ComponentError
from daprlite.resiliency import CircuitOpenError, Policy, ResiliencyTimeoutError

T = TypeVar("T")

# Everything a block must map after call_component: the component's own errors and
# the policy's reasons for giving up.
CALL_FAILURES = (ComponentError, ResiliencyTimeoutError, CircuitOpenError)


@dataclass(frozen=True, slots=True)
class _Refused:
    """A refusal carried out of the policy as a result (see the module docstring)."""

    error: ComponentError


def call_component(
    policy: Policy | None,
    op: Callable[[], Awaitable[T]],
    refused: Callable[[ComponentError], bool],
) -> Awaitable[T]:
    """Run ``op`` (one call into the component) under ``policy``; await the result.

    ``refused`` tells the caller's mistakes from transient failures. With no
    policy, or one that does nothing, ``op`` is called directly: not even a
    coroutine is added to the request's path.
    """
    if policy is None or policy.is_noop:
        return op()
    return _under_policy(policy, op, refused)


async def _under_policy(
    policy: Policy,
    op: Callable[[], Awaitable[T]],
    refused: Callable[[ComponentError], bool],
) -> T:
    async def attempt() -> T | _Refused:
        try:
            return await op()
        except ComponentError as exc:
            if refused(exc):
                return _Refused(exc)
            raise

    result = await policy.execute(attempt, retriable=_transient)
    if isinstance(result, _Refused):
        raise result.error
    return result


def _transient(exc: Exception) -> bool:
    # A component failure or a timed-out attempt. Anything else is a bug on our side,
    # which a retry would only repeat.
    return isinstance(exc, ComponentError | TimeoutError)


def failure_reason(exc: Exception) -> str:
    """The end of a catalogue message for one of :data:`CALL_FAILURES`."""
    if isinstance(exc, ResiliencyTimeoutError):
        return f"timed out after {exc.timeout:g}s (resiliency)"
    return str(exc)  # a component error, or "circuit breaker 'x' for ... is open"
