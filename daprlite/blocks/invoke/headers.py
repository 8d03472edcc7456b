"""Which caller headers travel with an invocation, and how they are renamed.

Three filters, each used at exactly one hop:
- :func:`forwardable` — when a call enters the caller's sidecar: drop
  hop-by-hop headers, the sidecar's own credentials and routing headers, and
  anything that claims an identity (``dapr-caller-*``, ``x-daprlite-*``),
  which only a sidecar may set;
- :func:`for_grpc_app` — metadata for a gRPC app (HTTP "permanent" headers
  get a ``dapr-`` prefix, as Dapr does, so they cannot clash with gRPC's own);
- :func:`for_http_app` — headers for an HTTP app (gRPC pseudo-headers and
  ``grpc-*`` get a ``dapr-`` prefix);
and :func:`response_headers` for what an app answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from daprlite.blocks.invoke.model import Headers

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "http2-settings",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# Never forwarded from a caller: credentials, routing, framing, and identity
# headers that the caller's sidecar sets itself.
_DROPPED = frozenset(
    {
        "dapr-api-token",
        "dapr-app-id",
        "content-length",
        "content-type",  # carried in InvokeRequest.content_type
        "host",
        "dapr-caller-app-id",
        "dapr-caller-namespace",
        "dapr-callee-app-id",
        "traceparent",  # replaced by this hop's trace context
        "tracestate",
        "x-forwarded-for",
        "x-forwarded-host",
        "forwarded",
    }
)
_INTERNAL_PREFIX = "x-daprlite-"

# IANA "permanent" message headers: prefixed for gRPC apps.
_PERMANENT = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-language",
        "accept-ranges",
        "cache-control",
        "content-type",
        "content-length",
        "cookie",
        "date",
        "expect",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-schedule-tag-match",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "referer",
        "via",
        "warning",
    }
)
_GRPC_KEY = re.compile(r"^[0-9a-z_.-]+$")
_PRINTABLE = re.compile(r"^[\x20-\x7e\t]*$")
_HTTP_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _connection_named(pairs: Iterable[tuple[str, str]]) -> set[str]:
    named: set[str] = set()
    for k, v in pairs:
        if k.lower() == "connection":
            named.update(t.strip().lower() for t in v.split(",") if t.strip())
    return named


def forwardable(pairs: Iterable[tuple[str, str]]) -> Headers:
    """The caller's headers (or gRPC metadata) that travel on to the callee."""
    pairs = list(pairs)
    also = _connection_named(pairs)
    out: list[tuple[str, str]] = []
    for k, v in pairs:
        low = k.lower()
        if (
            low in HOP_BY_HOP
            or low in _DROPPED
            or low in also
            or low.startswith(_INTERNAL_PREFIX)
            or low.endswith("-bin")
        ):
            continue
        out.append((low, v))
    return tuple(out)


def for_grpc_app(headers: Headers, from_grpc: bool) -> list[tuple[str, str]]:
    """Metadata for a gRPC app: valid keys only; HTTP permanent headers get ``dapr-``."""
    out: list[tuple[str, str]] = []
    for k, v in headers:
        key = k if from_grpc or k not in _PERMANENT else f"dapr-{k}"
        # gRPC's own headers (pseudo-headers, grpc-*) are the channel's to set.
        if key.startswith("grpc-") or key == "user-agent":
            continue
        if _GRPC_KEY.match(key) and _PRINTABLE.match(v):
            out.append((key, v))
    return out


def for_http_app(headers: Headers, from_grpc: bool) -> list[tuple[str, str]]:
    """Headers for an HTTP app: gRPC pseudo-headers and ``grpc-*`` get ``dapr-``."""
    out: list[tuple[str, str]] = []
    for k, v in headers:
        key = k
        if from_grpc and (k.startswith(":") or k.startswith("grpc-")):
            key = "dapr-" + k.lstrip(":")
        if _HTTP_TOKEN.match(key) and _PRINTABLE.match(v):
            out.append((key, v))
    return out


def response_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    """An app's response headers minus hop-by-hop and framing ones."""
    pairs = list(pairs)
    also = _connection_named(pairs)
    return tuple(
        (k, v)
        for k, v in pairs
        if (low := k.lower()) not in HOP_BY_HOP
        and low not in also
        and low not in ("content-length", "content-type", "server", "date")
        and not low.startswith(_INTERNAL_PREFIX)
    )
