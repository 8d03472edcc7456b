"""Resiliency: timeouts, retries and circuit breakers around outbound calls.

Built once at start-up from the ``kind: Resiliency`` resources
(:meth:`Resiliency.build`), then asked by the blocks for the :class:`Policy` of
each target — an app they invoke, a component they call, a component that
delivers to the app, or one of Dapr's built-in retries — and used as
``await policy.execute(call)``. See ``targets.py`` for how a target's policy is
chosen and ``policy.py`` for how it is applied.
"""

from __future__ import annotations

from daprlite.resiliency.errors import CircuitOpenError, CodedFailure, ResiliencyTimeoutError
from daprlite.resiliency.policy import Policy
from daprlite.resiliency.targets import Resiliency

__all__ = [
    "CircuitOpenError",
    "CodedFailure",
    "Policy",
    "Resiliency",
    "ResiliencyTimeoutError",
]
