"""Connecting to Redis, shared by the Redis components (``state.redis``, ``bindings.redis``).

Dapr gives all its Redis components the same connection metadata
(``redisHost``, ``redisPassword``, ``enableTLS``, timeouts, pool size, ...).
:class:`RedisConnectionSettings` decodes and checks those names once; a
component's own settings dataclass subclasses it and adds its own fields.
:func:`connect` turns the settings into a pooled redis-py asyncio client that
has answered a PING, so a component's ``init`` fails early and clearly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from daprlite.components._tls import load_client_cert
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import Duration, setting


def go_timeout(value: float, default: float) -> float | None:
    """A timeout setting in go-redis' convention: negative = none, 0 = the default."""
    if value < 0:
        return None
    return value or default


@dataclass(frozen=True, slots=True)
class RedisConnectionSettings:
    """Dapr's Redis connection metadata (case-insensitive names), common to all Redis components.

    Subclasses that add a ``__post_init__`` must call
    ``RedisConnectionSettings.__post_init__(self)`` explicitly: zero-argument
    ``super()`` does not work in slotted dataclasses before Python 3.14.
    """

    redisHost: str = setting(
        required=True,
        doc="`host:port` of the Redis server (`[v6addr]:port` for IPv6). A comma-separated "
        "list is for redisType `cluster`, which is not supported yet.",
    )
    redisPort: int | None = setting(
        None, doc="Port used when redisHost has none; 6379 when neither gives one."
    )
    redisUsername: str = setting("", doc="ACL user name (Redis 6+); empty = `default`.")
    redisPassword: str = setting("", doc="Password (or ACL password). Never logged.")
    redisDB: int = setting(0, doc="Database number selected after connecting (0 or more).")
    redisType: str = setting(
        "node", doc="`node` (one server). `cluster` is Dapr's, not supported here yet."
    )
    failover: bool = setting(
        False, doc="Dapr's Redis Sentinel mode; `true` is not supported here yet."
    )
    enableTLS: bool = setting(False, doc="Connect over TLS, verifying the server certificate.")
    insecureSkipTLSVerify: bool = setting(
        False, doc="With enableTLS: accept any server certificate and host name (testing only)."
    )
    clientCert: str = setting(
        "", doc="Client certificate for TLS: PEM text (as in Dapr) or a PEM file path."
    )
    clientKey: str = setting("", doc="Private key of clientCert: PEM text or a PEM file path.")
    redisMaxRetries: int = setting(
        3,
        doc="Retries of a command whose connection failed; 0 means the default 3 and "
        "-1 disables retries (go-redis' convention). Timeouts are never retried.",
    )
    redisMinRetryInterval: Duration = setting(
        Duration(0.008), doc="Backoff before the first retry; it doubles (with jitter)."
    )
    redisMaxRetryInterval: Duration = setting(
        Duration(0.512), doc="Upper bound of the backoff between retries."
    )
    dialTimeout: Duration = setting(
        Duration(5.0), doc="Timeout to establish a connection; -1 = none, 0 = the default 5s."
    )
    readTimeout: Duration = setting(
        Duration(3.0), doc="Timeout of a socket read; -1 = none, 0 = the default 3s."
    )
    writeTimeout: Duration | None = setting(
        None,
        doc="Timeout of a socket write; defaults to readTimeout. redis-py has one socket "
        "timeout, so the larger of the two applies to both.",
    )
    poolSize: int | None = setting(None, doc="Maximum connections; 10 per CPU by default.")
    poolTimeout: Duration | None = setting(
        None, doc="How long a call waits for a free pooled connection; readTimeout + 1s."
    )
    idleTimeout: Duration = setting(
        Duration(300.0),
        doc="A pooled connection idle for longer is checked with PING before reuse, so "
        "connections the server dropped are replaced; 0 or less disables the check.",
    )

    def __post_init__(self) -> None:
        redis_type = self.redisType.strip().lower()
        if redis_type == "cluster":
            raise MetadataError(
                "redisType",
                "'cluster' is not supported yet by daprlite's Redis components; "
                "use 'node' with a single server",
            )
        if redis_type not in ("node", ""):
            raise MetadataError(
                "redisType", f"expected 'node' or 'cluster', got {self.redisType!r}"
            )
        if self.failover:
            raise MetadataError(
                "failover",
                "Redis Sentinel failover is not supported yet by daprlite's Redis components; "
                "point redisHost at the master instead",
            )
        self.address()  # raises on a malformed redisHost / redisPort
        if self.redisDB < 0:
            raise MetadataError("redisDB", f"expected a database number >= 0, got {self.redisDB}")
        if bool(self.clientCert) != bool(self.clientKey):
            missing = "clientKey" if self.clientCert else "clientCert"
            raise MetadataError(
                missing, "is required when the other of clientCert/clientKey is set"
            )
        if self.poolSize is not None and self.poolSize < 1:
            raise MetadataError("poolSize", f"expected at least 1, got {self.poolSize}")

    def address(self) -> tuple[str, int]:
        """``(host, port)`` from redisHost, falling back on redisPort, then 6379."""
        text = self.redisHost.strip()
        if "@" in text:  # user:password@host — never echo it: it holds a password
            raise MetadataError(
                "redisHost",
                "must be host:port; put credentials in redisUsername and redisPassword "
                "(the value is not shown because it may hold a password)",
            )
        if "://" in text:
            raise MetadataError("redisHost", f"expected host:port, not a URL: {text!r}")
        if "," in text:
            raise MetadataError(
                "redisHost",
                "lists several hosts, which only redisType 'cluster' uses (not supported yet); "
                "give one host:port",
            )
        if text.startswith("["):  # [IPv6]:port
            host, _, rest = text[1:].partition("]")
            if rest and not rest.startswith(":"):
                raise MetadataError("redisHost", f"expected [address]:port, got {text!r}")
            port_text = rest[1:]
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:  # a bare name, or a bare IPv6 address
            host, port_text = text, ""
        if not host:
            raise MetadataError("redisHost", f"expected host:port, got {text!r}")
        if not port_text:
            port = 6379 if self.redisPort is None else self.redisPort
            field = "redisPort"
        else:
            field = "redisHost"
            try:
                port = int(port_text)
            except ValueError:
                raise MetadataError(
                    "redisHost", f"expected host:port with a numeric port, got {text!r}"
                ) from None
        if not 0 < port < 65536:
            raise MetadataError(field, f"expected a port between 1 and 65535, got {port}")
        return host, port

    def socket_timeout(self) -> float | None:
        """The socket timeout for reads and writes; None = wait forever."""
        read = go_timeout(self.readTimeout, 3.0)
        write = read if self.writeTimeout is None else go_timeout(self.writeTimeout, 3.0)
        return None if read is None or write is None else max(read, write)

    def pool_timeout(self) -> float | None:
        if self.poolTimeout is not None:
            return go_timeout(self.poolTimeout, 4.0)
        read = go_timeout(self.readTimeout, 3.0)
        return None if read is None else read + 1.0

    def retry(self) -> Retry:
        """Retry a command only when its connection failed, never after a timeout.

        A timed-out write may have run on the server; re-running it could apply
        it twice (bump a version, or increment a counter, once too often).
        """
        retries = 3 if self.redisMaxRetries == 0 else max(self.redisMaxRetries, 0)
        if retries == 0:
            return Retry(NoBackoff(), 0)
        backoff = ExponentialWithJitterBackoff(
            cap=self.redisMaxRetryInterval, base=self.redisMinRetryInterval
        )
        return Retry(backoff, retries, supported_errors=(RedisConnectionError,))


def tls_context(*, skip_verify: bool, client_cert: str, client_key: str) -> ssl.SSLContext:
    """The one SSL context every pooled connection shares. Blocking: run it in a thread.

    ``client_cert`` / ``client_key`` are PEM text, as in Dapr, or paths to PEM
    files. The context keeps the loaded key, so PEM text never stays on disk.
    """
    ctx = ssl.create_default_context()
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        load_client_cert(ctx, "clientCert", client_cert, "clientKey", client_key)
    return ctx


class TLSConnection(Connection):
    """A TCP connection wrapped in a shared, pre-built SSL context.

    redis-py's own SSLConnection builds a fresh context, loading the system CA
    store and the key files, on every connect; this one reuses ours.
    """

    def __init__(self, *, tls: ssl.SSLContext, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._tls = tls

    def _connection_arguments(self) -> Mapping[str, object]:
        return {**super()._connection_arguments(), "ssl": self._tls}


async def connect(
    settings: RedisConnectionSettings, *, what: str, log: logging.Logger
) -> tuple[Redis, str]:
    """A pooled client that has answered PING, and the server's version.

    ``what`` names the component in errors and log lines (``state store 'cache'``).
    Raises ComponentError naming the address, never the password.
    """
    host, port = settings.address()
    if (settings.clientCert or settings.insecureSkipTLSVerify) and not settings.enableTLS:
        log.warning(
            "%s: clientCert/insecureSkipTLSVerify are ignored because enableTLS is false", what
        )
    conn: dict[str, object] = {"connection_class": Connection}
    if settings.enableTLS:
        tls = await asyncio.to_thread(
            tls_context,
            skip_verify=settings.insecureSkipTLSVerify,
            client_cert=settings.clientCert,
            client_key=settings.clientKey,
        )
        conn = {"connection_class": TLSConnection, "tls": tls}
    idle = settings.idleTimeout
    pool = BlockingConnectionPool(
        max_connections=settings.poolSize or 10 * (os.cpu_count() or 1),
        timeout=settings.pool_timeout(),
        host=host,
        port=port,
        db=settings.redisDB,
        username=settings.redisUsername or None,
        password=settings.redisPassword or None,
        socket_connect_timeout=go_timeout(settings.dialTimeout, 5.0),
        socket_timeout=settings.socket_timeout(),
        retry=settings.retry(),
        health_check_interval=idle if idle > 0 else 0,
        **conn,  # type: ignore[arg-type]
    )
    client = Redis.from_pool(pool)
    try:
        await client.ping()
        info = await client.info("server")
    except RedisError as exc:
        await client.aclose()
        # redis-py's messages name the address and the failure, never the password.
        raise ComponentError(
            f"{what}: cannot use Redis at {host}:{port} (db {settings.redisDB}): {exc}"
        ) from exc
    version = str(info.get("redis_version", ""))
    log.info(
        "%s: connected to Redis %s at %s:%d (db %d, tls %s)",
        what,
        version,
        host,
        port,
        settings.redisDB,
        "on" if settings.enableTLS else "off",
    )
    return client, version
