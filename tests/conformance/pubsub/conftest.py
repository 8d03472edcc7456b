"""Fixtures for the pub/sub conformance suite: one live component per broker.

Every test in this folder runs once per pub/sub component against its real
broker (started by ``scripts/services.sh``). Each test gets a fresh
component instance and a unique topic (and stream/queue names derived from
it), so runs never see each other's messages. Redelivery delays are set
small so that "fail, then redeliver" finishes in well under a second.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import PubSub
from daprlite.components.registry import Registry
from tests.services import MQTT_URL, NATS_URL, RABBITMQ_URL, REDIS_HOST

# Each component type adds itself here and in _properties() below.
PUBSUB_TYPES: list[str] = [
    "pubsub.in-memory",
    "pubsub.sqlite",
    "pubsub.redis",
    "pubsub.rabbitmq",
    "pubsub.mqtt3",
    "pubsub.jetstream",
]
# Types whose groups keep messages published while no subscriber is active.
DURABLE_TYPES: set[str] = {
    "pubsub.sqlite",
    "pubsub.redis",
    "pubsub.rabbitmq",
    "pubsub.mqtt3",
    "pubsub.jetstream",
}
# Types that carry publish metadata and content type to the subscriber.
METADATA_TYPES: set[str] = {
    "pubsub.in-memory",
    "pubsub.sqlite",
    "pubsub.redis",
    "pubsub.rabbitmq",
    "pubsub.jetstream",
}
# Types that implement BulkPublisher natively.
BULK_TYPES: set[str] = {"pubsub.sqlite", "pubsub.redis"}


def _properties(ctype: str, tmp_path: Path, run: str) -> dict[str, str]:
    """Test metadata per type: small redelivery delays, names unique to ``run``."""
    if ctype == "pubsub.in-memory":
        return {"redeliverInterval": "50ms"}
    if ctype == "pubsub.sqlite":  # one file per test, shared by every instance of the test
        return {
            "connectionString": str(tmp_path / f"pubsub-{run}.db"),
            "pollInterval": "20ms",
            "redeliverInterval": "50ms",
            "visibilityTimeout": "2s",
        }
    if ctype == "pubsub.jetstream":  # streams are named after the topics, kept in memory
        return {"natsURL": NATS_URL, "memoryStorage": "true", "ackWait": "1s", "backOff": "50ms"}
    if ctype == "pubsub.redis":  # streams are named after the topics, unique per run
        return {"redisHost": REDIS_HOST, "processingTimeout": "200ms", "redeliverInterval": "100ms"}
    if ctype == "pubsub.rabbitmq":  # queues are named after the topics; unused ones expire
        return {
            "connectionString": RABBITMQ_URL,
            "deletedWhenUnused": "false",
            "requeueDelay": "50ms",
            "queueExpiresInSeconds": "60",
        }
    if ctype == "pubsub.mqtt3":  # topics are unique per run; so are the sessions they leave
        return {"url": MQTT_URL, "backOffInitialInterval": "50ms"}
    return {}


@dataclass
class PubSubUnderTest:
    type: str
    run: str  # unique per test; topics include it
    tmp_path: Path

    def topic(self, name: str = "t") -> str:
        return f"conf-{self.run}-{name}"

    def open(self) -> AbstractAsyncContextManager[PubSub]:
        """A fresh, initialised instance (as another sidecar would have); closed on exit."""
        return open_pubsub(self.type, self.tmp_path, self.run)


@asynccontextmanager
async def open_pubsub(ctype: str, tmp_path: Path, run: str) -> AsyncIterator[PubSub]:
    cls = Registry().resolve(ctype)
    instance = cls()
    meta = ComponentMetadata(
        name="conformance",
        type=ctype,
        properties=_properties(ctype, tmp_path, run),
        app_id="conformance-app",
    )
    await instance.init(meta)
    try:
        yield instance
    finally:
        await instance.close()


def _sut(request: pytest.FixtureRequest, tmp_path: Path) -> PubSubUnderTest:
    return PubSubUnderTest(request.param, uuid.uuid4().hex[:10], tmp_path)


@pytest.fixture(params=PUBSUB_TYPES)
def sut(request: pytest.FixtureRequest, tmp_path: Path) -> PubSubUnderTest:
    return _sut(request, tmp_path)


@pytest.fixture(params=sorted(DURABLE_TYPES))
def durable_sut(request: pytest.FixtureRequest, tmp_path: Path) -> PubSubUnderTest:
    return _sut(request, tmp_path)


@pytest.fixture(params=sorted(METADATA_TYPES))
def metadata_sut(request: pytest.FixtureRequest, tmp_path: Path) -> PubSubUnderTest:
    return _sut(request, tmp_path)


@pytest.fixture(params=sorted(BULK_TYPES))
def bulk_sut(request: pytest.FixtureRequest, tmp_path: Path) -> PubSubUnderTest:
    return _sut(request, tmp_path)
