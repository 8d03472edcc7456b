"""``bindings.rabbitmq`` against a real RabbitMQ broker.

The broker is the one ``scripts/services.sh rabbitmq`` brings up on
127.0.0.1:5672 (guest/guest). Every test uses its own queues and deletes them
afterwards; an independent aio-pika connection looks at the queues from the
outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from daprlite.components.bindings.api import (
    BindingEvent,
    DeliveryError,
    InvokeRequest,
    UnsupportedOperationError,
)
from daprlite.components.bindings.rabbitmq import RabbitMQBinding
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from tests.services import RABBITMQ_URL

WAIT = 10.0  # seconds any single expected delivery may take


class App:
    """A stand-in for the app behind the input binding: records every delivery attempt.

    ``refuse(data, attempt)`` decides whether attempt number ``attempt`` (from
    1) of a payload fails, as an app answering 500 would.
    """

    def __init__(self, refuse: Callable[[bytes, int], bool] = lambda data, attempt: False):
        self.refuse = refuse
        self.attempts: Counter[bytes] = Counter()
        self.accepted: asyncio.Queue[BindingEvent] = asyncio.Queue()

    async def __call__(self, event: BindingEvent) -> bytes | None:
        self.attempts[event.data] += 1
        if self.refuse(event.data, self.attempts[event.data]):
            raise DeliveryError("the app answered 500")
        await self.accepted.put(event)
        return None

    async def next(self, timeout: float = WAIT) -> BindingEvent:
        return await asyncio.wait_for(self.accepted.get(), timeout)

    async def collect(self, count: int, timeout: float = WAIT) -> list[bytes]:
        async with asyncio.timeout(timeout):
            return [(await self.accepted.get()).data for _ in range(count)]


class Run:
    """Names unique to one test; the fixture deletes the queues afterwards."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.channel = channel  # an independent connection's, to look at queues
        self.queues: set[str] = set()
        self.name = f"rmq-{self.id}"

    def queue(self, suffix: str = "") -> str:
        name = f"daprlite-test-{self.id}{suffix}"
        self.queues.add(name)
        return name

    def props(self, **extra: str) -> dict[str, str]:
        props = {"host": RABBITMQ_URL, "queueName": self.queue()}
        props.update(extra)
        self.queues.add(props["queueName"])
        return props

    async def get(self, queue: str) -> AbstractIncomingMessage | None:
        """Take one message off ``queue`` (acknowledged), or None when it is empty."""
        q = await self.channel.get_queue(queue, ensure=False)
        message = await q.get(no_ack=True, fail=False, timeout=WAIT)
        return message


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=WAIT)
    try:
        channel = await connection.channel()
        r = Run(channel)
        yield r
        for name in r.queues:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                cleanup = await connection.channel()
                await cleanup.queue_delete(name, timeout=WAIT)
    finally:
        await connection.close()


@asynccontextmanager
async def opened(
    props: dict[str, str], app: App | None = None, name: str = "rabbitmq-test"
) -> AsyncIterator[RabbitMQBinding]:
    binding = RabbitMQBinding()
    await binding.init(ComponentMetadata(name=name, type="bindings.rabbitmq", properties=props))
    try:
        if app is not None:
            await binding.read(app)
        yield binding
    finally:
        await asyncio.wait_for(binding.close(), WAIT)


async def create(binding: RabbitMQBinding, data: bytes, **metadata: str) -> None:
    await asyncio.wait_for(binding.invoke(InvokeRequest("create", data, metadata)), WAIT)


# -- output and input -----------------------------------------------------------------------
async def test_create_puts_the_message_in_the_queue_for_any_consumer(run: Run) -> None:
    props = run.props()
    async with opened(props) as binding:
        await create(binding, b'{"order": 1}')
        message = await run.get(props["queueName"])
        assert message is not None
        assert message.body == b'{"order": 1}'
        assert message.content_type == "text/plain"
        assert message.delivery_mode == aio_pika.DeliveryMode.NOT_PERSISTENT


async def test_create_reaches_the_bindings_own_input(run: Run) -> None:
    app = App()
    async with opened(run.props(), app) as binding:
        await create(binding, b"hello")
        assert (await app.next()).data == b"hello"


async def test_connection_string_is_an_alias_of_host(run: Run) -> None:
    props = {"connectionString": RABBITMQ_URL, "queueName": run.queue()}
    app = App()
    async with opened(props, app) as binding:
        await create(binding, b"via alias")
        assert (await app.next()).data == b"via alias"


async def test_durable_queue_gets_persistent_messages_with_the_requested_content_type(
    run: Run,
) -> None:
    props = run.props(durable="true", contentType="application/json")
    async with opened(props) as binding:
        await create(binding, b"{}")
        await create(binding, b"<a/>", contentType="application/xml")
        first, second = await run.get(props["queueName"]), await run.get(props["queueName"])
    assert first is not None and second is not None
    assert first.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert (first.content_type, second.content_type) == ("application/json", "application/xml")


async def test_durable_queue_keeps_a_message_across_close_and_reopen(run: Run) -> None:
    props = run.props(durable="true")
    async with opened(props) as binding:
        await create(binding, b"survivor")
    app = App()
    async with opened(props, app):
        assert (await app.next()).data == b"survivor"


async def test_higher_priority_message_is_delivered_first(run: Run) -> None:
    props = run.props(maxPriority="10", prefetchCount="1")
    async with opened(props) as binding:
        await create(binding, b"low", priority="1")
        await create(binding, b"high", priority="9")
    app = App()
    async with opened(props, app):
        assert await app.collect(2) == [b"high", b"low"]


async def test_create_declares_the_queue_again_after_it_was_deleted(run: Run) -> None:
    props = run.props()
    async with opened(props) as binding:
        await run.channel.queue_delete(props["queueName"], timeout=WAIT)
        await create(binding, b"not lost")
        message = await run.get(props["queueName"])
        assert message is not None and message.body == b"not lost"


# -- time to live ---------------------------------------------------------------------------
async def test_message_with_ttl_metadata_is_gone_when_not_consumed_in_time(run: Run) -> None:
    props = run.props()
    async with opened(props) as binding:
        await create(binding, b"short-lived", ttlInSeconds="1")
        await create(binding, b"stays")
        await asyncio.sleep(2)
        message = await run.get(props["queueName"])
        assert message is not None and message.body == b"stays"
        assert await run.get(props["queueName"]) is None


async def test_queue_ttl_setting_expires_every_unconsumed_message(run: Run) -> None:
    props = run.props(ttlInSeconds="1")
    async with opened(props) as binding:
        await create(binding, b"short-lived")
        await asyncio.sleep(2)
        assert await run.get(props["queueName"]) is None


# -- delivery guarantees ----------------------------------------------------------------------
async def test_message_refused_twice_is_delivered_on_the_third_attempt(run: Run) -> None:
    app = App(refuse=lambda data, attempt: attempt <= 2)
    async with opened(run.props(), app) as binding:
        await create(binding, b"retry me")
        assert (await app.next()).data == b"retry me"
        assert app.attempts[b"retry me"] == 3


async def test_twenty_messages_with_refused_deliveries_all_arrive(run: Run) -> None:
    # Every 5th message fails its first delivery; nothing may go missing.
    app = App(refuse=lambda data, attempt: int(data) % 5 == 0 and attempt == 1)
    async with opened(run.props(), app) as binding:
        sent = [str(i).encode() for i in range(1, 21)]
        for data in sent:
            await create(binding, data)
        assert sorted(await app.collect(20, timeout=30)) == sorted(sent)
        assert {data for data, n in app.attempts.items() if n == 2} == {b"5", b"10", b"15", b"20"}


async def test_message_in_flight_when_closing_is_delivered_after_reopening(run: Run) -> None:
    props = run.props()
    refusing = App(refuse=lambda data, attempt: True)
    async with opened(props, refusing) as binding:
        await create(binding, b"keep me")
        async with asyncio.timeout(WAIT):
            while refusing.attempts[b"keep me"] == 0:
                await asyncio.sleep(0.05)
    app = App()
    async with opened(props, app):
        assert (await app.next()).data == b"keep me"


async def test_input_and_output_recover_after_the_broker_drops_the_connection(run: Run) -> None:
    app = App()
    async with opened(run.props(reconnectWaitInSeconds="0.2"), app, name=run.name) as binding:
        await create(binding, b"before")
        assert (await app.next()).data == b"before"
        await _close_connections_named(f"daprlite binding {run.name}")
        async with asyncio.timeout(30):
            while True:  # publishing fails until the connection is back
                try:
                    await create(binding, b"after")
                    break
                except ComponentError:
                    await asyncio.sleep(0.2)
        assert (await app.next()).data == b"after"


# -- errors ---------------------------------------------------------------------------------
async def test_unreachable_broker_fails_init_with_component_error(run: Run) -> None:
    binding = RabbitMQBinding()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    props = run.props(host=f"amqp://guest:secret-pw@127.0.0.1:{port}/")
    meta = ComponentMetadata(name="rmq", type="bindings.rabbitmq", properties=props)
    with pytest.raises(ComponentError, match="cannot connect to RabbitMQ") as err:
        await asyncio.wait_for(binding.init(meta), WAIT)
    assert "secret-pw" not in str(err.value)


async def test_existing_queue_with_other_settings_fails_init_naming_the_queue(run: Run) -> None:
    name = run.queue()
    await run.channel.declare_queue(name, durable=True, timeout=WAIT)
    binding = RabbitMQBinding()
    props = {"host": RABBITMQ_URL, "queueName": name, "durable": "false"}
    meta = ComponentMetadata(name="rmq", type="bindings.rabbitmq", properties=props)
    with pytest.raises(ComponentError, match=f"queue '{name}' already exists with other settings"):
        await asyncio.wait_for(binding.init(meta), WAIT)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"queueName": "q"}, "host"),
        ({"host": RABBITMQ_URL}, "queueName"),
        ({"host": "http://127.0.0.1:5672", "queueName": "q"}, "host"),
        ({"host": "127.0.0.1:5672", "queueName": "q"}, "host"),
        ({"host": "amqp://127.0.0.1:port/", "queueName": "q"}, "host"),
        ({"host": RABBITMQ_URL, "queueName": "q", "durable": "maybe"}, "durable"),
        ({"host": RABBITMQ_URL, "queueName": "q", "ttlInSeconds": "-5"}, "ttlInSeconds"),
        ({"host": RABBITMQ_URL, "queueName": "q", "ttlInSeconds": "soon"}, "ttlInSeconds"),
        ({"host": RABBITMQ_URL, "queueName": "q", "prefetchCount": "-1"}, "prefetchCount"),
        ({"host": RABBITMQ_URL, "queueName": "q", "maxPriority": "0"}, "maxPriority"),
        ({"host": RABBITMQ_URL, "queueName": "q", "maxPriority": "256"}, "maxPriority"),
        (
            {"host": RABBITMQ_URL, "queueName": "q", "reconnectWaitInSeconds": "0"},
            "reconnectWaitInSeconds",
        ),
        ({"host": "amqps://127.0.0.1/", "queueName": "q", "clientKey": "k.pem"}, "clientCert"),
        (
            {"host": "amqps://127.0.0.1/", "queueName": "q", "caCert": "/nonexistent/ca.pem"},
            "caCert",
        ),
    ],
)
async def test_bad_metadata_fails_init_naming_the_field(props: dict[str, str], field: str) -> None:
    binding = RabbitMQBinding()
    meta = ComponentMetadata(name="rmq", type="bindings.rabbitmq", properties=props)
    with pytest.raises(MetadataError) as err:
        await binding.init(meta)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"ttlInSeconds": "soon"}, "ttlInSeconds"),
        ({"ttlInSeconds": "-1"}, "ttlInSeconds"),
        ({"priority": "high"}, "priority"),
        ({"priority": "300"}, "priority"),
    ],
)
async def test_bad_request_metadata_is_rejected_naming_the_field(
    run: Run, metadata: dict[str, str], field: str
) -> None:
    props = run.props()
    async with opened(props) as binding:
        with pytest.raises(MetadataError) as err:
            await create(binding, b"x", **metadata)
        assert err.value.field == field
        assert await run.get(props["queueName"]) is None  # nothing was published


async def test_unsupported_operation_raises_and_create_is_the_only_operation(run: Run) -> None:
    async with opened(run.props()) as binding:
        assert binding.operations() == ["create"]
        with pytest.raises(UnsupportedOperationError):
            await binding.invoke(InvokeRequest("delete", b""))


async def test_closed_binding_refuses_calls(run: Run) -> None:
    async with opened(run.props()) as binding:
        pass
    with pytest.raises(ComponentError, match="closed"):
        await create(binding, b"x")


def test_type_name_resolves_to_the_rabbitmq_binding() -> None:
    assert Registry().resolve("bindings.rabbitmq") is RabbitMQBinding


# -- helpers --------------------------------------------------------------------------------
async def _rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    proc = await asyncio.create_subprocess_exec(
        binary, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, f"rabbitmqctl {args[0]} failed: {err.decode()}"
    return out.decode()


async def _close_connections_named(name: str) -> None:
    """Have the broker force-close the connections whose client gave ``name``."""
    listing = await _rabbitmqctl("-s", "list_connections", "pid", "client_properties")
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if f'"{name}"' in line]
    assert pids, f"no connection named {name!r} on the broker"
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "daprlite test: simulated broker failure")
