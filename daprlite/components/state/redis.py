"""``state.redis``: a state store on one Redis server, through redis-py asyncio.

The block (``blocks/state.py``) calls this store through the ``StateStore``
contract. Storage is Dapr's: one Redis hash per key with the fields ``data``
(the value bytes) and ``version`` (an integer, incremented on every write); the
etag is the version as a decimal string. Every write, delete and transaction is
one Lua script (:mod:`daprlite.components.state._redis`), so its etag and
first-write checks are atomic against concurrent writers, and a transaction
that fails a check writes nothing. TTLs are Redis expiries set by that script.
Reads are one MULTI/EXEC pipeline. Only a single server (``redisType: node``)
is supported for now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.state._redis import (
    WRITE_SCRIPT,
    TLSConnection,
    encode_operations,
    expire_metadata,
    go_timeout,
    mismatch_message,
    tls_context,
)
from daprlite.components.state.api import (
    BulkGetItem,
    DeleteRequest,
    Feature,
    GetRequest,
    GetResponse,
    SetRequest,
    TransactionOperation,
)

_log = logging.getLogger("daprlite.component.state")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Component metadata of ``state.redis``, with Dapr's (case-insensitive) names."""

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
    # RUF009 is silenced below: `setting` returns a dataclasses.field, which ruff cannot tell.
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
    ttlInSeconds: int | None = setting(
        None,
        doc="Store-wide default TTL for writes whose request gives none; -1 or 0 = no TTL.",
    )

    def __post_init__(self) -> None:
        redis_type = self.redisType.strip().lower()
        if redis_type == "cluster":
            raise MetadataError(
                "redisType",
                "'cluster' is not supported yet by daprlite's state.redis; "
                "use 'node' with a single server",
            )
        if redis_type not in ("node", ""):
            raise MetadataError(
                "redisType", f"expected 'node' or 'cluster', got {self.redisType!r}"
            )
        if self.failover:
            raise MetadataError(
                "failover",
                "Redis Sentinel failover is not supported yet by daprlite's state.redis; "
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
        if self.ttlInSeconds is not None and self.ttlInSeconds < -1:
            raise MetadataError(
                "ttlInSeconds", f"expected -1, 0 or a positive number, got {self.ttlInSeconds}"
            )

    def address(self) -> tuple[str, int]:
        """``(host, port)`` from redisHost, falling back on redisPort, then 6379."""
        text = self.redisHost.strip()
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

        A timed-out write may have run on the server; re-running it would turn
        a success into an etag mismatch or bump the version twice.
        """
        retries = 3 if self.redisMaxRetries == 0 else max(self.redisMaxRetries, 0)
        if retries == 0:
            return Retry(NoBackoff(), 0)
        backoff = ExponentialWithJitterBackoff(
            cap=self.redisMaxRetryInterval, base=self.redisMinRetryInterval
        )
        return Retry(backoff, retries, supported_errors=(RedisConnectionError,))


class RedisStateStore:
    """Redis hashes and Lua scripts: ETAG, TRANSACTIONAL and TTL, plus a native bulk get.

    ``consistency: strong`` is accepted; it would mean ``WAIT`` for replicas,
    which a single server without replicas does not have, so it is a no-op.
    """

    def __init__(self) -> None:
        self.settings: RedisSettings | None = None
        self._name = ""
        self._client: Redis | None = None
        self._write: AsyncScript | None = None
        self._has_expiretime = True  # PEXPIRETIME exists from Redis 7.0

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(RedisSettings, metadata.properties)
        self._name = metadata.name
        host, port = settings.address()
        if (settings.clientCert or settings.insecureSkipTLSVerify) and not settings.enableTLS:
            _log.warning(
                "state store %r: clientCert/insecureSkipTLSVerify are ignored "
                "because enableTLS is false",
                self._name,
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
                f"state store {self._name!r}: cannot use Redis at {host}:{port} "
                f"(db {settings.redisDB}): {exc}"
            ) from exc
        version = str(info.get("redis_version", ""))
        major = version.partition(".")[0]
        self._has_expiretime = not major.isdigit() or int(major) >= 7
        self._write = client.register_script(WRITE_SCRIPT)
        self._client = client
        self.settings = settings
        _log.info(
            "state store %r: connected to Redis %s at %s:%d (db %d, tls %s)",
            self._name,
            version,
            host,
            port,
            settings.redisDB,
            "on" if settings.enableTLS else "off",
        )

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL})

    async def close(self) -> None:
        client, self._client, self._write = self._client, None, None
        if client is not None:
            await client.aclose()  # closes the pool too (Redis.from_pool)

    # -- helpers -----------------------------------------------------------------
    def _redis(self) -> Redis:
        if self._client is None:
            raise ComponentError(f"state store {self._name!r} is not initialised or closed")
        return self._client

    def _script(self) -> AsyncScript:
        if self._write is None:
            raise ComponentError(f"state store {self._name!r} is not initialised or closed")
        return self._write

    @contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Turn driver errors into ComponentError naming the store and the action."""
        try:
            yield
        except RedisError as exc:
            raise ComponentError(f"state store {self._name!r}: {action} failed: {exc}") from exc

    def _item(self, fields: list[bytes | None], expiry: int, now: float) -> GetResponse | None:
        data, version = fields
        if version is None:  # missing (or expired) key
            return None
        meta = expire_metadata(expiry, self._has_expiretime, now)
        return GetResponse(data or b"", version.decode(), meta)

    def _queue_read(self, pipe: Redis, key: str) -> None:
        pipe.hmget(key, ["data", "version"])
        if self._has_expiretime:
            pipe.pexpiretime(key)
        else:
            pipe.pttl(key)

    async def _apply(self, operations: Sequence[TransactionOperation], action: str) -> None:
        """Run the write script; raise ETagMismatchError if a check failed (nothing written)."""
        default_ttl = self.settings.ttlInSeconds if self.settings else None
        keys, args = encode_operations(operations, default_ttl)
        script = self._script()
        with self._failures(action):
            failed = int(await script(keys=keys, args=args))
        if failed:
            raise ETagMismatchError(mismatch_message(operations[failed - 1]))

    # -- contract -------------------------------------------------------------------
    async def get(self, req: GetRequest) -> GetResponse | None:
        with self._failures(f"get of key {req.key!r}"):
            async with self._redis().pipeline(transaction=True) as pipe:
                self._queue_read(pipe, req.key)
                fields, expiry = await pipe.execute()
        return self._item(fields, expiry, time.time())

    async def bulk_get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> list[BulkGetItem]:
        if not keys:
            return []
        with self._failures(f"bulk get of {len(keys)} keys"):
            async with self._redis().pipeline(transaction=True) as pipe:
                for key in keys:
                    self._queue_read(pipe, key)
                replies = await pipe.execute(raise_on_error=False)
        now = time.time()
        out = []
        for i, key in enumerate(keys):
            fields, expiry = replies[2 * i], replies[2 * i + 1]
            if isinstance(fields, Exception) or isinstance(expiry, Exception):
                err = fields if isinstance(fields, Exception) else expiry
                out.append(BulkGetItem(key, error=str(err)))
                continue
            item = self._item(fields, expiry, now)
            if item is None:
                out.append(BulkGetItem(key))
            else:
                out.append(BulkGetItem(key, item.data, item.etag, item.metadata))
        return out

    async def set(self, req: SetRequest) -> None:
        await self._apply([req], f"save of key {req.key!r}")

    async def delete(self, req: DeleteRequest) -> None:
        await self._apply([req], f"delete of key {req.key!r}")

    async def multi(
        self, operations: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        if operations:
            await self._apply(operations, f"transaction of {len(operations)} operations")
