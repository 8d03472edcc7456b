"""The CloudEvent envelope and topic scopes of the pub/sub block."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from daprlite.blocks.pubsub.cloudevents import (
    EnvelopeError,
    PublishContext,
    envelope,
    expired,
    media_type,
)
from daprlite.blocks.pubsub.scopes import TopicScopes

CTX = PublishContext(
    pubsub="pubsub",
    topic="orders",
    app_id="checkout",
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    tracestate="k=v",
)


def event(body: bytes, content_type: str, metadata: dict[str, str] | None = None) -> dict:
    return json.loads(envelope(body, content_type, CTX, metadata or {}))


def test_json_payload_becomes_data_as_json_with_exact_numbers() -> None:
    body = b'{"amount": 12345678901234567890.123456789, "n": 1e400}'
    raw = envelope(body, "Application/JSON; charset=utf-8", CTX, {})
    assert b'"data":{"amount": 12345678901234567890.123456789, "n": 1e400}' in raw
    ev = json.loads(raw)
    assert ev["datacontenttype"] == "Application/JSON; charset=utf-8"
    assert (ev["specversion"], ev["type"], ev["source"]) == (
        "1.0",
        "com.dapr.event.sent",
        "checkout",
    )
    assert (ev["topic"], ev["pubsubname"]) == ("orders", "pubsub")
    assert ev["traceparent"] == ev["traceid"] == CTX.traceparent and ev["tracestate"] == "k=v"
    assert ev["id"] and datetime.fromisoformat(ev["time"].replace("Z", "+00:00"))


def test_text_and_invalid_json_become_strings() -> None:
    assert event(b"hello", "")["data"] == "hello"
    assert event(b"hello", "")["datacontenttype"] == "text/plain"
    assert event(b"{not json", "application/json")["data"] == "{not json"


def test_binary_payload_goes_to_data_base64() -> None:
    ev = event(b"\x00\xff", "application/octet-stream")
    assert base64.b64decode(ev["data_base64"]) == b"\x00\xff" and "data" not in ev


def test_a_cloudevent_body_is_kept_with_routing_fields_overwritten() -> None:
    theirs = {"id": "mine", "type": "t", "source": "s", "topic": "x", "data": {"a": 1}}
    ev = event(json.dumps(theirs).encode(), "application/cloudevents+json")
    assert (ev["id"], ev["type"], ev["source"], ev["data"]) == ("mine", "t", "s", {"a": 1})
    assert (ev["topic"], ev["pubsubname"], ev["specversion"]) == ("orders", "pubsub", "1.0")
    assert ev["traceid"] == CTX.traceparent


def test_a_cloudevent_body_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        envelope(b"[1]", "application/cloudevents+json", CTX, {})
    with pytest.raises(EnvelopeError):
        envelope(b"{", "application/cloudevents+json", CTX, {})


def test_cloudevent_metadata_overrides_attributes() -> None:
    ev = event(b"x", "text/plain", {"CloudEvent.Type": "my.type", "cloudevent.id": "42"})
    assert (ev["type"], ev["id"]) == ("my.type", "42")


def test_ttl_without_native_support_stamps_an_expiration() -> None:
    ctx = PublishContext("p", "t", "a", ttl_seconds=60)
    ev = json.loads(envelope(b"x", "text/plain", ctx, {}))
    when = datetime.fromisoformat(ev["expiration"].replace("Z", "+00:00"))
    assert timedelta(seconds=50) < when - datetime.now(UTC) <= timedelta(seconds=60)
    assert not expired(ev)
    assert expired({"expiration": "2000-01-01T00:00:00Z"})
    assert not expired({"expiration": "garbage"})


def test_media_type_ignores_case_and_parameters() -> None:
    assert media_type("Text/Plain; charset=UTF-8") == "text/plain"


def test_topic_scopes() -> None:
    scopes = TopicScopes.from_metadata(
        {
            "AllowedTopics": "orders, audit, secret",
            "protectedTopics": "secret",
            "publishingScopes": "checkout=orders;reader=",
            "subscriptionScopes": "billing=orders,secret",
        }
    )
    assert scopes.may_publish("checkout", "orders")
    assert not scopes.may_publish("checkout", "audit")  # listed: only its topics
    assert not scopes.may_publish("reader", "orders")  # empty list: nothing
    assert scopes.may_publish("other", "audit")  # unlisted apps are free...
    assert not scopes.may_publish("other", "secret")  # ...but not on protected topics
    assert not scopes.may_publish("other", "unknown")  # outside allowedTopics
    assert scopes.may_subscribe("billing", "secret")
    assert not scopes.may_subscribe("other", "secret")
    assert TopicScopes.from_metadata({}).may_publish("anyone", "anything")
