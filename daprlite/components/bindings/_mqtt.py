"""Small MQTT helpers for ``bindings.mqtt3`` and ``pubsub.mqtt3``: URL, connecting, SUBACK codes.

Kept apart so that ``mqtt3.py`` holds only the settings and the binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

from daprlite.components.errors import ComponentError, MetadataError

# scheme -> (default port, TLS)
_SCHEMES = {"tcp": (1883, False), "mqtt": (1883, False), "ssl": (8883, True), "mqtts": (8883, True)}


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and how to connect, parsed from ``url``; ``str()`` leaves the credentials out."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    def __str__(self) -> str:
        return f"{'ssl' if self.tls else 'tcp'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> Broker:
    """``tcp://user:pass@host:1883`` -> Broker; MetadataError naming ``url`` when malformed."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise MetadataError(
            "url", f"expected a tcp://, mqtt://, ssl:// or mqtts:// URL, got scheme {scheme!r}"
        )
    default_port, tls = _SCHEMES[scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise MetadataError("url", "has a port that is not a number 1-65535") from None
    if not parts.hostname:
        raise MetadataError("url", f"has no host name (expected {scheme}://host:port)")
    return Broker(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic


def refused(code: object) -> bool:
    """True for a SUBACK failure code (0x80), as an int or a paho ReasonCode."""
    is_failure = getattr(code, "is_failure", None)
    if isinstance(is_failure, bool):
        return is_failure
    return isinstance(code, int) and code >= 0x80


async def disconnect(client: aiomqtt.Client) -> None:
    """Leave the broker; a connection that is already gone is fine."""
    with contextlib.suppress(aiomqtt.MqttError, OSError, asyncio.TimeoutError):
        await client.__aexit__(None, None, None)


async def connect(
    broker: Broker,
    client_id: str,
    *,
    clean_session: bool,
    manual_ack: bool,
    tls: ssl.SSLContext | None,
    owner: str,
    timeout: float,
) -> aiomqtt.Client:
    """A connected client; ComponentError naming ``owner`` (e.g. "binding 'x'") when it fails."""
    client = aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        identifier=client_id,
        clean_session=clean_session,
        tls_context=tls,
        timeout=timeout,
    )
    # aiomqtt has no public switch for application acknowledgements yet
    # (empicano/aiomqtt#345); paho, underneath, has. It must be on before
    # connecting, because a resumed session redelivers right after CONNACK.
    client._client.manual_ack_set(manual_ack)
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        # aiomqtt's messages name the failure, never the password. A broker
        # that drops the connection after the TLS handshake (say, for a
        # missing client certificate) only shows as a timeout here; paho
        # logs the cause under the "mqtt" logger.
        hint = " (TLS rejected by the broker? see the 'mqtt' log)" if broker.tls else ""
        raise ComponentError(
            f"{owner}: cannot connect to the MQTT broker {broker} as {client_id}: {exc}{hint}"
        ) from exc
    return client
