"""``state.redis``: a state store on one Redis server, through redis-py asyncio.

The block (``blocks/state.py``) calls this store through the ``StateStore``
contract. Storage is Dapr's: one Redis hash per key with the fields ``data``
(the value bytes) and ``version`` (an integer, incremented on every write); the
etag is the version as a decimal string. Every write, delete and transaction is
one Lua script (:mod:`daprlite.components.state._redis`), so its etag and
first-write checks are atomic against concurrent writers, and a transaction
that fails a check writes nothing. TTLs are Redis expiries set by that script.
A read is one small Lua script too; a bulk read is one MULTI/EXEC pipeline.
Only a single server (``redisType: node``) is supported for now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from daprlite.components._redis_common import RedisConnectionSettings, connect
from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting
from daprlite.components.state._redis import (
    WRITE_SCRIPT,
    encode_operations,
    expire_metadata,
    mismatch_message,
    read_script,
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
class RedisSettings(RedisConnectionSettings):
    """Component metadata of ``state.redis``, with Dapr's (case-insensitive) names.

    The connection fields (``redisHost``, ``redisPassword``, ``enableTLS``, ...)
    are shared with the other Redis components, in
    :class:`~daprlite.components._redis_common.RedisConnectionSettings`.
    """

    ttlInSeconds: int | None = setting(
        None,
        doc="Store-wide default TTL for writes whose request gives none; -1 or 0 = no TTL.",
    )

    def __post_init__(self) -> None:
        RedisConnectionSettings.__post_init__(self)  # no zero-argument super() with slots
        if self.ttlInSeconds is not None and self.ttlInSeconds < -1:
            raise MetadataError(
                "ttlInSeconds", f"expected -1, 0 or a positive number, got {self.ttlInSeconds}"
            )


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
        self._read: AsyncScript | None = None
        self._has_expiretime = True  # PEXPIRETIME exists from Redis 7.0

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(RedisSettings, metadata.properties)
        self._name = metadata.name
        client, version = await connect(settings, what=f"state store {self._name!r}", log=_log)
        major = version.partition(".")[0]
        self._has_expiretime = not major.isdigit() or int(major) >= 7
        self._write = client.register_script(WRITE_SCRIPT)
        self._read = client.register_script(read_script(self._has_expiretime))
        self._client = client
        self.settings = settings

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL})

    async def close(self) -> None:
        client, self._client, self._write, self._read = self._client, None, None, None
        if client is not None:
            await client.aclose()  # closes the pool too (Redis.from_pool)

    # -- helpers -----------------------------------------------------------------
    def _redis(self) -> Redis:
        if self._client is None:
            raise ComponentError(f"state store {self._name!r} is not initialised or closed")
        return self._client

    def _script(self, script: AsyncScript | None) -> AsyncScript:
        if script is None:
            raise ComponentError(f"state store {self._name!r} is not initialised or closed")
        return script

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
        script = self._script(self._write)
        with self._failures(action):
            failed = int(await script(keys=keys, args=args))
        if failed:
            raise ETagMismatchError(mismatch_message(operations[failed - 1]))

    # -- contract -------------------------------------------------------------------
    async def get(self, req: GetRequest) -> GetResponse | None:
        read = self._script(self._read)
        with self._failures(f"get of key {req.key!r}"):
            fields, expiry = await read(keys=[req.key])
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
