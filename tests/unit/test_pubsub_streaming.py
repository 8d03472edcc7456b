"""The streaming subscription's own rules, over the real in-memory broker: answers are
matched by event id, a silent client's event is redelivered after the answer
timeout, a closed stream leaves its in-flight event with the broker, and the
registry lists only open streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from daprlite import errors
from daprlite.blocks.pubsub.api import PubSubAPI
from daprlite.blocks.pubsub.delivery import Status
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.inmemory import InMemoryPubSub
from daprlite.runtime.registry import ComponentStore, LiveComponent
from daprlite.runtime.streaming import Stream, StreamingSubscriptions, StreamRequest


@pytest.fixture
async def api() -> AsyncIterator[PubSubAPI]:
    bus = InMemoryPubSub()
    props = {"redeliverInterval": "50ms", "subscriptionScopes": "app=open"}
    await bus.init(ComponentMetadata("stream-bus", "pubsub.in-memory", properties=props))
    store = ComponentStore()
    store.add(LiveComponent("bus", "pubsub.in-memory", "v1", "pubsub", bus, props))
    try:
        yield PubSubAPI(store, "app")
    finally:
        await bus.close()


async def next_event(stream: Stream, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    event = await asyncio.wait_for(stream.next_event(), timeout)
    assert event is not None
    return event


async def test_answers_are_matched_to_their_event_by_id(api: PubSubAPI) -> None:
    streaming = StreamingSubscriptions(api, "app")
    async with streaming.open(StreamRequest("bus", "open")) as stream:
        await api.publish("bus", "open", b'{"n":1}', "application/json", {}, None)
        await api.publish("bus", "open", b'{"n":2}', "application/json", {}, None)
        first, second = await next_event(stream), await next_event(stream)
        assert first.path == "/" and first.topic == "open" and first.pubsub_name == "bus"
        stream.answer("not-an-event", Status.SUCCESS)  # ignored
        stream.answer(second.id, Status.SUCCESS)
        stream.answer(first.id, Status.RETRY)
        again = await next_event(stream)
        assert again.id == first.id
        assert json.loads(again.data) == {"n": 1}
        stream.answer(again.id, Status.SUCCESS)
        with pytest.raises(TimeoutError):
            await next_event(stream, timeout=0.3)  # everything was acknowledged


async def test_a_silent_client_gets_the_event_again_after_the_answer_timeout(
    api: PubSubAPI,
) -> None:
    streaming = StreamingSubscriptions(api, "app", answer_timeout=0.2)
    async with streaming.open(StreamRequest("bus", "open")) as stream:
        await api.publish("bus", "open", b'{"n":1}', "application/json", {}, None)
        first = await next_event(stream)
        again = await next_event(stream)  # no answer was sent
        assert again.id == first.id


async def test_an_event_in_flight_when_the_stream_closes_goes_to_the_next_stream(
    api: PubSubAPI,
) -> None:
    streaming = StreamingSubscriptions(api, "app")
    async with streaming.open(StreamRequest("bus", "open", dead_letter_topic="dead")) as stream:
        await api.publish("bus", "open", b'{"n":1}', "application/json", {}, None)
        first = await next_event(stream)
    assert await stream.next_event() is None
    assert streaming.active() == []
    async with streaming.open(StreamRequest("bus", "open")) as stream2:
        again = await next_event(stream2)
        assert again.id == first.id  # kept by the broker, not dead-lettered
        stream2.answer(again.id, Status.SUCCESS)


async def test_only_open_streams_are_listed(api: PubSubAPI) -> None:
    streaming = StreamingSubscriptions(api, "app")
    async with streaming.open(StreamRequest("bus", "open", {"k": "v"}, "dead")):
        [sub] = streaming.active()
        assert (sub.pubsub, sub.topic, sub.kind, sub.dead_letter_topic) == (
            "bus",
            "open",
            "STREAMING",
            "dead",
        )
        assert dict(sub.metadata) == {"k": "v"}
    assert streaming.active() == []


@pytest.mark.parametrize(
    ("req", "code"),
    [
        (StreamRequest("", "open"), "ERR_PUBSUB_EMPTY"),
        (StreamRequest("bus", ""), "ERR_TOPIC_NAME_EMPTY"),
        (StreamRequest("missing", "open"), "ERR_PUBSUB_NOT_FOUND"),
        (StreamRequest("bus", "closed"), "ERR_PUBSUB_FORBIDDEN"),
    ],
)
async def test_bad_stream_requests_are_catalogue_errors(
    api: PubSubAPI, req: StreamRequest, code: str
) -> None:
    streaming = StreamingSubscriptions(api, "app")
    with pytest.raises(errors.APIError) as err:
        async with streaming.open(req):
            pass
    assert err.value.code == code
    assert streaming.active() == []
