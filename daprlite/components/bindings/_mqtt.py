"""Small MQTT helpers for ``bindings.mqtt3``: the broker URL, SUBACK codes, disconnecting.

Kept apart so that ``mqtt3.py`` holds only the settings and the binding.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

from daprlite.components.errors import MetadataError

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
