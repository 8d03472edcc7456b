"""The CloudEvent envelope the publishing sidecar builds (dapr-api.md 5.2).

``envelope`` turns one publish request into the JSON bytes that go to the
broker: a new CloudEvent 1.0 around the payload, or the caller's own
CloudEvent (``application/cloudevents+json``) with the sidecar's fields
filled in. ``rawPayload`` publishes skip this module entirely.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

CLOUDEVENT_JSON = "application/cloudevents+json"
DEFAULT_TYPE = "com.dapr.event.sent"
DEFAULT_SOURCE = "Dapr"
SPEC_VERSION = "1.0"

# Attributes a publisher may set through metadata "cloudevent.<name>".
_OVERRIDABLE = ("id", "source", "type", "subject", "traceid", "traceparent", "tracestate")


class EnvelopeError(ValueError):
    """The body claims to be a CloudEvent but is not a JSON object."""


@dataclass(frozen=True, slots=True)
class PublishContext:
    pubsub: str
    topic: str
    app_id: str
    traceparent: str = ""
    tracestate: str = ""
    # When the broker has no native TTL, the sidecar stamps an expiration.
    ttl_seconds: int | None = None


def media_type(content_type: str) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json``."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    mt = media_type(content_type)
    return mt == "application/json" or mt.endswith("+json")


def is_binary(content_type: str) -> bool:
    return media_type(content_type) in (
        "application/octet-stream",
        "application/cloudevents+protobuf",
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def cloudevent_overrides(metadata: Mapping[str, str]) -> dict[str, str]:
    """``cloudevent.<attr>`` publish metadata (keys case-insensitive)."""
    out: dict[str, str] = {}
    for key, value in metadata.items():
        low = key.lower()
        if low.startswith("cloudevent.") and low[len("cloudevent.") :] in _OVERRIDABLE:
            out[low[len("cloudevent.") :]] = value
    return out


def _data_fields(body: bytes, content_type: str) -> tuple[dict[str, object], bytes | None]:
    """The data attribute, or (for a JSON body) the raw JSON to embed verbatim.

    A JSON body is embedded as written rather than decoded and re-encoded, so
    numbers keep every digit and nothing is reformatted.
    """
    if is_binary(content_type):
        return {"data_base64": base64.b64encode(body).decode()}, None
    if is_json(content_type):
        try:
            json.loads(body)
        except ValueError:
            pass
        else:
            return {}, body.strip()
    return {"data": body.decode("utf-8", errors="replace")}, None


def envelope(
    body: bytes, content_type: str, ctx: PublishContext, metadata: Mapping[str, str]
) -> bytes:
    """The CloudEvent JSON to publish for ``body``."""
    overrides = cloudevent_overrides(metadata)
    content_type = content_type or "text/plain"
    raw_json: bytes | None = None
    if media_type(content_type) == CLOUDEVENT_JSON:
        event = _theirs(body)
        event.setdefault("source", DEFAULT_SOURCE)
        event.setdefault("type", DEFAULT_TYPE)
        event.setdefault("specversion", SPEC_VERSION)
        if "traceid" not in event:
            event["traceid"] = ctx.traceparent
            event["traceparent"] = ctx.traceparent
        event.setdefault("tracestate", ctx.tracestate)
    else:
        fields, raw_json = _data_fields(body, content_type)
        event = {
            "id": str(uuid.uuid4()),
            "source": ctx.app_id or DEFAULT_SOURCE,
            "type": DEFAULT_TYPE,
            "specversion": SPEC_VERSION,
            "datacontenttype": content_type,
            **fields,
            "traceid": ctx.traceparent,
            "traceparent": ctx.traceparent,
            "tracestate": ctx.tracestate,
            "time": _rfc3339(_now()),
        }
    # The sidecar's routing fields always win.
    event["topic"] = ctx.topic
    event["pubsubname"] = ctx.pubsub
    for attr, value in overrides.items():
        event[attr] = value
    if "traceparent" in overrides and "traceid" not in overrides:
        event["traceid"] = overrides["traceparent"]
    if ctx.ttl_seconds is not None and "expiration" not in event:
        event["expiration"] = _rfc3339(_now() + timedelta(seconds=ctx.ttl_seconds))
    encoded = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    if raw_json is None:
        return encoded
    return encoded[:-1] + b',"data":' + raw_json + b"}"


def _theirs(body: bytes) -> dict[str, object]:
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise EnvelopeError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise EnvelopeError("the body must be a JSON object (a CloudEvent)")
    return event


def expired(event: Mapping[str, object], now: datetime | None = None) -> bool:
    """True when the event carries an ``expiration`` in the past."""
    raw = event.get("expiration")
    if not isinstance(raw, str) or not raw:
        return False
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= (now or _now())
