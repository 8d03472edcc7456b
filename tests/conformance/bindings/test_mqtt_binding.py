"""``bindings.mqtt3`` against a real Mosquitto broker.

The shared broker is the one ``scripts/services.sh mosquitto`` brings up on
127.0.0.1:1883; every test uses its own topic and client ids, and removes the
persistent sessions it created. The reconnection test starts a private
Mosquitto on a free port, which it stops itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
import pytest

from daprlite.components.bindings.api import (
    BindingEvent,
    DeliveryError,
    InvokeRequest,
    UnsupportedOperationError,
)
from daprlite.components.bindings.mqtt3 import MQTTBinding
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from tests.services import MQTT_URL

WAIT = 10.0  # seconds any single expected delivery may take
_NOT_A_CERT = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"


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
    """Names unique to one test, and the sessions to remove afterwards."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.topic = f"daprlite-test/{self.id}"
        self.client_ids: set[str] = set()

    def props(self, **extra: str) -> dict[str, str]:
        props = {"url": MQTT_URL, "topic": self.topic, "consumerID": f"dl-{self.id}"}
        props.update(extra)
        self.client_ids.add(props["consumerID"])
        return props


@pytest.fixture
async def run() -> AsyncIterator[Run]:
    r = Run()
    yield r
    # A persistent session (cleanSession false) outlives the binding on the
    # broker; connecting once with a clean session removes it.
    for cid in r.client_ids:
        for role in ("consumer", "producer"):
            with contextlib.suppress(aiomqtt.MqttError):
                async with _client(identifier=f"{cid}-{role}", clean_session=True):
                    pass


def _client(url: str = MQTT_URL, **kwargs: object) -> aiomqtt.Client:
    parts = urlsplit(url)
    return aiomqtt.Client(parts.hostname or "", parts.port or 1883, timeout=WAIT, **kwargs)  # type: ignore[arg-type]


@asynccontextmanager
async def opened(props: dict[str, str], app: App | None = None) -> AsyncIterator[MQTTBinding]:
    binding = MQTTBinding()
    await binding.init(ComponentMetadata(name="mqtt-test", type="bindings.mqtt3", properties=props))
    try:
        if app is not None:
            await binding.read(app)
        yield binding
    finally:
        await asyncio.wait_for(binding.close(), WAIT)


async def create(binding: MQTTBinding, data: bytes, **metadata: str) -> None:
    await asyncio.wait_for(binding.invoke(InvokeRequest("create", data, metadata)), WAIT)


# -- output and input -----------------------------------------------------------------------
async def test_create_reaches_own_input_and_an_independent_subscriber(run: Run) -> None:
    app = App()
    async with _client() as other, opened(run.props(), app) as binding:
        await other.subscribe(run.topic, qos=1)
        await create(binding, b'{"order": 1}')
        event = await app.next()
        assert event.data == b'{"order": 1}'
        assert event.metadata["topic"] == run.topic
        message = await asyncio.wait_for(anext(aiter(other.messages)), WAIT)
        assert message.payload == b'{"order": 1}'


async def test_request_topic_overrides_the_component_topic(run: Run) -> None:
    other_topic = f"{run.topic}/other"
    async with _client() as other, opened(run.props()) as binding:
        await other.subscribe(f"{run.topic}/#", qos=1)
        await create(binding, b"elsewhere", topic=other_topic)
        message = await asyncio.wait_for(anext(aiter(other.messages)), WAIT)
        assert (message.topic.value, message.payload) == (other_topic, b"elsewhere")


async def test_retain_metadata_keeps_the_message_for_later_subscribers(run: Run) -> None:
    async with opened(run.props()) as binding:
        await create(binding, b"last known value", retain="true")
        try:
            async with _client() as late:
                await late.subscribe(run.topic, qos=1)
                message = await asyncio.wait_for(anext(aiter(late.messages)), WAIT)
                assert message.payload == b"last known value"
                assert message.retain
        finally:
            await create(binding, b"", retain="true")  # an empty retained message clears it


async def test_input_with_wildcard_topic_receives_from_matching_topics(run: Run) -> None:
    app = App()
    async with (
        opened(run.props(topic=f"{run.topic}/+/temp"), app),
        opened(run.props(consumerID=f"dl-{run.id}-pub")) as publisher,
    ):
        await create(publisher, b"21.5", topic=f"{run.topic}/kitchen/temp")
        event = await app.next()
        assert event.data == b"21.5"
        assert event.metadata["topic"] == f"{run.topic}/kitchen/temp"


# -- delivery guarantees ----------------------------------------------------------------------
async def test_message_refused_twice_is_delivered_on_the_third_attempt(run: Run) -> None:
    app = App(refuse=lambda data, attempt: attempt <= 2)
    async with opened(run.props(), app) as binding:
        await create(binding, b"retry me")
        assert (await app.next()).data == b"retry me"
        assert app.attempts[b"retry me"] == 3


async def test_twenty_messages_with_refused_deliveries_all_arrive_in_order(run: Run) -> None:
    # Every 5th message fails its first delivery; nothing may go missing.
    app = App(refuse=lambda data, attempt: int(data) % 5 == 0 and attempt == 1)
    async with opened(run.props(), app) as binding:
        sent = [str(i).encode() for i in range(1, 21)]
        for data in sent:
            await create(binding, data)
        assert await app.collect(20, timeout=30) == sent
        assert {data for data, n in app.attempts.items() if n == 2} == {b"5", b"10", b"15", b"20"}


async def test_message_refused_until_close_is_redelivered_after_reopening(run: Run) -> None:
    props = run.props()
    refusing = App(refuse=lambda data, attempt: True)
    async with opened(props, refusing) as binding:
        await create(binding, b"keep me")
        async with asyncio.timeout(WAIT):
            while refusing.attempts[b"keep me"] == 0:
                await asyncio.sleep(0.05)
    # Never acknowledged: the broker kept it in the session and hands it over again.
    app = App()
    async with opened(props, app):
        assert (await app.next()).data == b"keep me"


async def test_back_off_max_retries_sets_a_refused_message_aside_until_reconnect(
    run: Run,
) -> None:
    props = run.props(backOffMaxRetries="2")
    app = App(refuse=lambda data, attempt: data == b"poison")
    async with opened(props, app) as binding:
        await create(binding, b"poison")
        await create(binding, b"fine")
        assert (await app.next()).data == b"fine"  # not stuck behind the refused one
        await asyncio.sleep(1.5)  # longer than the backoff between attempts
        assert app.attempts[b"poison"] == 3  # the first attempt and two retries, then it stopped
    recovered = App()
    async with opened(props, recovered):
        assert (await recovered.next()).data == b"poison"


async def test_reconnects_both_directions_after_the_broker_restarts(run: Run) -> None:
    port = _free_port()
    app = App()
    async with _mosquitto(port) as restart:
        url = f"tcp://127.0.0.1:{port}"
        async with opened(run.props(url=url, cleanSession="true"), app) as binding:
            await create(binding, b"before")
            assert (await app.next()).data == b"before"
            await restart()
            # The broker lost every session; once the binding has subscribed
            # again, what is published arrives. Publish until it does.
            async with asyncio.timeout(30):
                i = 0
                while True:
                    i += 1
                    with contextlib.suppress(ComponentError):
                        await create(binding, f"after {i}".encode())
                    with contextlib.suppress(TimeoutError):
                        event = await app.next(timeout=0.5)
                        break
            assert event.data.startswith(b"after ")


async def test_ssl_url_verifies_the_broker_and_presents_the_client_certificate(
    run: Run, tmp_path: Path
) -> None:
    pki = await _make_pki(tmp_path)
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        # The broker accepts no client without a certificate signed by the CA.
        "require_certificate true\n"
    )
    tls = {
        "url": f"ssl://127.0.0.1:{port}",
        "caCert": (pki / "ca.pem").read_text(),  # PEM text, as Dapr takes it
        "clientCert": (pki / "client.pem").read_text(),
        "clientKey": str(pki / "client.key"),  # or a file
    }
    app = App()
    async with _mosquitto(port, config), opened(run.props(**tls), app) as binding:
        await create(binding, b"over tls")
        assert (await app.next()).data == b"over tls"


async def test_ssl_url_refuses_a_broker_certificate_from_an_unknown_ca(
    run: Run, tmp_path: Path
) -> None:
    pki = await _make_pki(tmp_path)
    port = _free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
        f"certfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
    )
    async with _mosquitto(port, config):
        binding = MQTTBinding()
        # No caCert: the system CAs do not know our test CA.
        meta = ComponentMetadata(
            "m", "bindings.mqtt3", properties=run.props(url=f"mqtts://127.0.0.1:{port}")
        )
        with pytest.raises(ComponentError, match="cannot connect"):
            await asyncio.wait_for(binding.init(meta), WAIT)


# -- errors ---------------------------------------------------------------------------------
async def test_unreachable_broker_fails_init_with_component_error(run: Run) -> None:
    binding = MQTTBinding()
    meta = ComponentMetadata(
        name="mqtt-test",
        type="bindings.mqtt3",
        properties=run.props(url=f"tcp://127.0.0.1:{_free_port()}"),
    )
    with pytest.raises(ComponentError, match="cannot connect to the MQTT broker"):
        await asyncio.wait_for(binding.init(meta), WAIT)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"topic": "a"}, "url"),
        ({"url": MQTT_URL}, "topic"),
        ({"url": MQTT_URL, "topic": " "}, "topic"),
        ({"url": "http://127.0.0.1:1883", "topic": "a"}, "url"),
        ({"url": "tcp://127.0.0.1:notaport", "topic": "a"}, "url"),
        ({"url": MQTT_URL, "topic": "a", "qos": "3"}, "qos"),
        ({"url": MQTT_URL, "topic": "a", "qos": "high"}, "qos"),
        ({"url": MQTT_URL, "topic": "a", "retain": "maybe"}, "retain"),
        ({"url": MQTT_URL, "topic": "a", "backOffMaxRetries": "-2"}, "backOffMaxRetries"),
        (
            {"url": MQTT_URL, "topic": "a", "backOffMaxRetries": "3", "qos": "0"},
            "backOffMaxRetries",
        ),
        (
            {"url": MQTT_URL, "topic": "a", "backOffMaxRetries": "3", "cleanSession": "true"},
            "backOffMaxRetries",
        ),
        ({"url": "ssl://127.0.0.1:8883", "topic": "a", "clientCert": "x.pem"}, "clientKey"),
        ({"url": "ssl://127.0.0.1:8883", "topic": "a", "caCert": "/nonexistent/ca.pem"}, "caCert"),
        ({"url": "mqtts://127.0.0.1", "topic": "a", "caCert": _NOT_A_CERT}, "caCert"),
    ],
)
async def test_bad_metadata_fails_init_naming_the_field(props: dict[str, str], field: str) -> None:
    binding = MQTTBinding()
    meta = ComponentMetadata(name="mqtt-test", type="bindings.mqtt3", properties=props, app_id="a")
    with pytest.raises(MetadataError) as err:
        await binding.init(meta)
    assert err.value.field == field


async def test_consumer_id_is_required_without_an_app_id() -> None:
    binding = MQTTBinding()
    meta = ComponentMetadata(
        name="m", type="bindings.mqtt3", properties={"url": MQTT_URL, "topic": "a"}
    )
    with pytest.raises(MetadataError) as err:
        await binding.init(meta)
    assert err.value.field == "consumerID"


async def test_session_belongs_to_app_id_consumer_client_without_consumer_id(run: Run) -> None:
    app_id = f"dl-app-{run.id}"
    run.client_ids.add(app_id)
    props = {"url": MQTT_URL, "topic": run.topic}
    binding = MQTTBinding()
    await binding.init(ComponentMetadata("m", "bindings.mqtt3", properties=props, app_id=app_id))
    refusing = App(refuse=lambda data, attempt: True)
    try:
        await binding.read(refusing)
        await create(binding, b"unacknowledged")
        async with asyncio.timeout(WAIT):
            while not refusing.attempts:
                await asyncio.sleep(0.05)
    finally:
        await binding.close()
    # Whoever resumes the session of client "{appID}-consumer" gets the message
    # the binding never acknowledged.
    async with _client(identifier=f"{app_id}-consumer", clean_session=False) as resumed:
        message = await asyncio.wait_for(anext(aiter(resumed.messages)), WAIT)
        assert message.payload == b"unacknowledged"


async def test_publishing_to_a_wildcard_topic_is_rejected_naming_topic(run: Run) -> None:
    async with opened(run.props(topic=f"{run.topic}/#")) as binding:
        with pytest.raises(MetadataError) as err:
            await create(binding, b"x")
        assert err.value.field == "topic"
        with pytest.raises(MetadataError) as err:
            await create(binding, b"x", topic="a/+/b")
        assert err.value.field == "topic"


async def test_bad_retain_request_metadata_is_rejected_naming_retain(run: Run) -> None:
    async with opened(run.props()) as binding:
        with pytest.raises(MetadataError) as err:
            await create(binding, b"x", retain="sometimes")
        assert err.value.field == "retain"


async def test_unsupported_operation_raises_and_create_is_the_only_operation(run: Run) -> None:
    async with opened(run.props()) as binding:
        assert binding.operations() == ["create"]
        with pytest.raises(UnsupportedOperationError):
            await binding.invoke(InvokeRequest("get", b""))


async def test_closed_binding_refuses_calls(run: Run) -> None:
    async with opened(run.props()) as binding:
        pass
    with pytest.raises(ComponentError, match="closed"):
        await create(binding, b"x")


def test_both_type_names_resolve_to_the_mqtt_binding() -> None:
    assert Registry().resolve("bindings.mqtt3") is MQTTBinding
    assert Registry().resolve("bindings.mqtt") is MQTTBinding


# -- helpers --------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_port(port: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


@asynccontextmanager
async def _mosquitto(
    port: int, config: Path | None = None
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A private Mosquitto on ``port`` (set up by ``config`` if given).

    Yields a coroutine function that restarts it.
    """
    args = ["-c", str(config)] if config else ["-p", str(port)]
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> None:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        procs.append(proc)
        await _wait_port(port, WAIT)

    async def stop() -> None:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    async def restart() -> None:
        await stop()
        await start()

    await start()
    try:
        yield restart
    finally:
        await stop()


async def _openssl(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "openssl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, f"openssl {args[0]} failed: {err.decode()}"


async def _make_pki(tmp_path: Path) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    pki = tmp_path / "pki"
    pki.mkdir()
    await _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=daprlite test CA",
        "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.pem"),
    )  # fmt: skip
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for who, cn in (("server", "127.0.0.1"), ("client", "daprlite test client")):
        await _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", str(pki / f"{who}.key"), "-out", str(pki / f"{who}.csr"),
        )  # fmt: skip
        await _openssl(
            "x509", "-req", "-days", "1", "-in", str(pki / f"{who}.csr"),
            "-CA", str(pki / "ca.pem"), "-CAkey", str(pki / "ca.key"), "-CAcreateserial",
            "-extfile", str(pki / "san.ext"), "-out", str(pki / f"{who}.pem"),
        )  # fmt: skip
    return pki
