"""W3C trace context (``traceparent`` / ``tracestate``) carried across every hop.

The invocation path calls :func:`continue_trace` once per request as it
enters the sidecar: a valid incoming ``traceparent`` keeps its trace id and
flags and gets a fresh span id for this hop (the sidecar's span, whose
parent is the caller's); a missing or malformed one starts a new trace.
The result travels to the next sidecar and to the app unchanged in shape,
so every process on the path sees the same trace id.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_MAX_TRACESTATE = 512  # W3C asks propagators to keep at least 512 characters


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = "00"
    state: str = ""

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @property
    def sampled(self) -> bool:
        return int(self.flags, 16) & 1 == 1

    def headers(self) -> dict[str, str]:
        out = {TRACEPARENT: self.traceparent}
        if self.state:
            out[TRACESTATE] = self.state
        return out


# Trace and span ids need to be unique, not secret (W3C asks for randomness, not
# unpredictability): the non-cryptographic generator saves a system call per id.
_random = random.Random()


def _new_span_id() -> str:
    return f"{_random.getrandbits(64) or 1:016x}"


def _new_trace_id() -> str:
    return f"{_random.getrandbits(128) or 1:032x}"


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """``(trace id, parent span id, flags)`` of a valid header, else None."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    # Version ff is forbidden; version 00 has exactly four fields.
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, flags


def continue_trace(
    traceparent: str | None, tracestate: str | None = None, sample_new: bool = False
) -> TraceContext:
    """The context for this hop: the caller's trace continued, or a new one."""
    parsed = parse_traceparent(traceparent)
    if parsed is None:
        return TraceContext(
            trace_id=_new_trace_id(),
            span_id=_new_span_id(),
            flags="01" if sample_new else "00",
        )
    trace_id, _parent, flags = parsed
    state = (tracestate or "").strip()
    if len(state) > _MAX_TRACESTATE:
        state = ""
    return TraceContext(trace_id=trace_id, span_id=_new_span_id(), flags=flags, state=state)
