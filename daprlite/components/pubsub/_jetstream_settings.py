"""Settings of ``pubsub.jetstream``: Dapr's metadata names, decoded and checked at init.

:class:`~daprlite.components.pubsub.jetstream.JetStreamPubSub` decodes these
once from the Component manifest; they then shape the connection (auth, TLS),
the streams it creates and the durable consumers it subscribes through.
Also here: how topic and group names become valid NATS stream and consumer
names, and how publish metadata travels as NATS headers.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import Duration, parse_duration, setting

_DELIVER_POLICIES = ("all", "last", "new", "sequence", "time")
_ACK_POLICIES = ("explicit", "all", "none")
_CONCURRENCY = ("single", "parallel")
_SCHEMES = ("nats", "tls", "ws", "wss")
# NATS stream and consumer names may not hold whitespace, subject tokens or path separators.
_BAD_NAME_CHARS = re.compile(r"[\s.*>/\\]")
_MAX_NAME = 64
# Header names the broker or this component use themselves; not publish metadata.
CONTENT_TYPE_HEADER = "Content-Type"
_RESERVED_PREFIX = "nats-"


@dataclass(frozen=True, slots=True)
class JetStreamSettings:
    """Component metadata of ``pubsub.jetstream``, with Dapr's (case-insensitive) names."""

    natsURL: str = setting(
        required=True,
        doc="Server URL(s), comma separated: `nats://host:4222`, `tls://host:4222` for TLS.",
    )
    name: str = setting("dapr.io - pubsub.jetstream", doc="Connection name shown by the server.")
    jwt: str = setting("", doc="User JWT for decentralised auth; needs seedKey.")
    seedKey: str = setting("", doc="User NKey seed that signs the server's nonce; needs jwt.")
    token: str = setting("", doc="Authentication token.")
    tls_client_cert: str = setting("", doc="Client certificate (PEM text or file) for mTLS.")
    tls_client_key: str = setting("", doc="Private key of tls_client_cert (PEM text or file).")
    streamName: str = setting(
        "",
        doc="Stream that stores the topics; created when missing, and the topic added to its "
        "subjects. Unset: the stream already holding the topic, else one named after the topic.",
    )
    durableName: str = setting(
        "",
        doc="Consumer name, used as is. Unset: `{consumer group}_{topic}`, so each group "
        "of each topic has its own durable consumer.",
    )
    queueGroupName: str = setting(
        "", doc="Consumer group to subscribe in instead of the app id (consumerID)."
    )
    deliverPolicy: str = setting(
        "all", doc="Where a new consumer starts: all, last, new, sequence, time."
    )
    startSequence: int | None = setting(None, doc="First stream sequence (deliverPolicy sequence).")
    startTime: int | None = setting(None, doc="Start time, unix seconds (deliverPolicy time).")
    ackPolicy: str = setting(
        "explicit",
        doc="explicit (each message acked), all (an ack covers earlier ones) or none. Only "
        "explicit keeps the at-least-once promise for every message.",
    )
    ackWait: Duration | None = setting(
        None,
        doc="How long the server waits for an ack before redelivering (server default 30s); "
        "also the delay of a redelivery after a handler error.",
    )
    maxDeliver: int | None = setting(
        None, doc="Deliveries of a message before the server gives up on it; unset = no limit."
    )
    maxAckPending: int | None = setting(
        None, doc="Unacknowledged messages a consumer may have out at once (server default 1000)."
    )
    replicas: int | None = setting(None, doc="Replicas of created streams and consumers.")
    memoryStorage: bool = setting(False, doc="Keep created streams and consumers in memory.")
    rateLimit: int | None = setting(
        None, doc="Bits per second (push consumers only: ignored by this pull-based component)."
    )
    heartbeat: Duration | None = setting(
        None, doc="Idle heartbeat the server sends during each pull request."
    )
    flowControl: bool = setting(
        False, doc="Push-consumer flow control: ignored by this pull-based component."
    )
    concurrency: str = setting(
        "single", doc="single: one message at a time, in order; parallel: many at once."
    )
    backOff: str = setting(
        "",
        doc="Comma-separated redelivery delays (`1s,5s,30s`): the n-th handler error waits the "
        "n-th (the last one repeats). Also given to the server when maxDeliver is set.",
    )
    domain: str = setting("", doc="JetStream domain (leaf nodes).")
    apiPrefix: str = setting("", doc="JetStream API prefix (cross-account imports).")

    def __post_init__(self) -> None:
        self.servers()  # raises on a malformed URL
        _one_of("deliverPolicy", self.deliverPolicy, _DELIVER_POLICIES)
        _one_of("ackPolicy", self.ackPolicy, _ACK_POLICIES)
        _one_of("concurrency", self.concurrency, _CONCURRENCY)
        if self.deliverPolicy.lower() == "sequence" and not self.startSequence:
            raise MetadataError("startSequence", "is required when deliverPolicy is sequence")
        if self.deliverPolicy.lower() == "time" and self.startTime is None:
            raise MetadataError("startTime", "is required when deliverPolicy is time")
        if bool(self.jwt) != bool(self.seedKey):
            missing = "seedKey" if self.jwt else "jwt"
            raise MetadataError(missing, "is required when the other of jwt/seedKey is set")
        if bool(self.tls_client_cert) != bool(self.tls_client_key):
            missing = "tls_client_key" if self.tls_client_cert else "tls_client_cert"
            raise MetadataError(
                missing, "is required when the other of tls_client_cert/tls_client_key is set"
            )
        _positive("ackWait", self.ackWait)
        _positive("heartbeat", self.heartbeat)
        _positive("maxAckPending", self.maxAckPending)
        _positive("replicas", self.replicas)
        _positive("startSequence", self.startSequence)
        if self.maxDeliver is not None and (self.maxDeliver == 0 or self.maxDeliver < -1):
            raise MetadataError(
                "maxDeliver", f"expected -1 or a positive count, got {self.maxDeliver}"
            )
        delays = self.back_off()
        if delays and self.maxDeliver not in (None, -1) and self.maxDeliver <= len(delays):
            raise MetadataError(
                "maxDeliver",
                f"must exceed the {len(delays)} backOff delays (the server requires it), "
                f"got {self.maxDeliver}",
            )
        if self.streamName and _BAD_NAME_CHARS.search(self.streamName):
            raise MetadataError(
                "streamName", "may not contain whitespace, '.', '*', '>', '/' or '\\'"
            )

    def servers(self) -> list[str]:
        urls = [u.strip() for u in self.natsURL.split(",") if u.strip()]
        if not urls:
            raise MetadataError("natsURL", "is required but was not given")
        for url in urls:
            parts = urlsplit(url if "://" in url else f"nats://{url}")
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise MetadataError("natsURL", "has a port that is not a number 1-65535") from None
            if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
                # Name scheme and host only: the rest of the URL may hold credentials.
                raise MetadataError(
                    "natsURL",
                    "expected URLs such as nats://host:4222 (or tls://, ws://, wss://), "
                    f"got one with scheme {parts.scheme!r} and host {parts.hostname!r}",
                )
        return urls

    def back_off(self) -> list[float]:
        delays: list[float] = []
        for part in self.backOff.split(","):
            if not part.strip():
                continue
            try:
                delay = parse_duration(part)
            except ValueError as exc:
                raise MetadataError(
                    "backOff", f"expected durations such as '1s,5s': {exc}"
                ) from exc
            if delay <= 0:
                raise MetadataError("backOff", f"expected positive durations, got {part.strip()!r}")
            delays.append(delay)
        return delays

    def nak_delay(self, attempt: int) -> float | None:
        """Seconds before redelivering a message whose handler failed on delivery ``attempt``."""
        delays = self.back_off()
        if delays:
            return delays[min(max(attempt, 1), len(delays)) - 1]
        return float(self.ackWait) if self.ackWait else None

    def start_time(self) -> datetime | None:
        return None if self.startTime is None else datetime.fromtimestamp(self.startTime, UTC)

    def credentials(self) -> str:
        """jwt + seedKey in the `.creds` layout the driver reads (never logged)."""
        return (
            "-----BEGIN NATS USER JWT-----\n"
            f"{self.jwt.strip()}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{self.seedKey.strip()}\n"
            "------END USER NKEY SEED------\n"
        )


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value.strip().lower() not in allowed:
        raise MetadataError(key, f"expected one of {', '.join(allowed)}, got {value!r}")


def _positive(key: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise MetadataError(key, f"expected a positive value, got {value}")


def nats_name(text: str) -> str:
    """A valid stream/consumer name for ``text``; a hash keeps altered names distinct."""
    clean = _BAD_NAME_CHARS.sub("_", text)
    if clean == text and 0 < len(text) <= _MAX_NAME:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:10]
    return f"{clean[:_MAX_NAME]}_{digest}"


def check_header(key: str, value: str) -> str | None:
    """Why publish metadata ``key: value`` cannot travel as a NATS header (None: it can)."""
    if not key or any(c in key for c in ": \t\r\n") or not key.isprintable():
        return "is not a valid header name"
    if "\r" in value or "\n" in value:
        return "has a line break in its value"
    return None


def carried_metadata(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The publish metadata a message's headers carry (without the broker's own headers)."""
    return {
        k: v
        for k, v in (headers or {}).items()
        if k != CONTENT_TYPE_HEADER and not k.lower().startswith(_RESERVED_PREFIX)
    }
