"""``bindings.redis``: an output binding that reads and writes plain Redis string keys.

``blocks.bindings`` calls :meth:`RedisBinding.invoke` for
``POST /v1.0/bindings/{name}`` (and gRPC ``InvokeBinding``). Unlike
``state.redis`` there is no key prefix, etag or hash: the request metadata
``key`` is the Redis key itself, so other programs can share the data. The
connection metadata and the pooled client are the state store's
(:mod:`daprlite.components._redis_common`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from daprlite.components._redis_common import RedisConnectionSettings, connect
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, parse_bool

_log = logging.getLogger("daprlite.component.bindings")

_OPERATIONS = ("create", "get", "delete", "increment")


@dataclass(frozen=True, slots=True)
class RedisBindingSettings(RedisConnectionSettings):
    """Component metadata of ``bindings.redis``: exactly the Redis connection names of Dapr.

    See :class:`~daprlite.components._redis_common.RedisConnectionSettings`
    (``redisHost`` required, ``redisPassword``, ``redisDB``, ``enableTLS``, ...).
    """


def _key(metadata: Mapping[str, str]) -> str:
    key = metadata.get("key", "")
    if not key:
        raise MetadataError("key", "is required in the request metadata (the Redis key)")
    return key


def _ttl(metadata: Mapping[str, str]) -> int | None:
    """Request metadata ``ttlInSeconds``: a whole number of seconds above zero, as in Dapr."""
    raw = metadata.get("ttlInSeconds", "").strip()
    if not raw:
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise MetadataError("ttlInSeconds", f"expected an integer, got {raw!r}") from None
    if not 0 < ttl <= 2**31 - 1:
        raise MetadataError("ttlInSeconds", f"expected 1 to {2**31 - 1} seconds, got {ttl}")
    return ttl


def _delete_after_get(metadata: Mapping[str, str]) -> bool:
    raw = metadata.get("delete", "")
    try:
        return parse_bool(raw)
    except ValueError:
        raise MetadataError("delete", f"expected true or false, got {raw!r}") from None


class RedisBinding:
    """Operations ``create`` (SET), ``get`` (GET / GETDEL), ``delete`` (DEL) and ``increment``."""

    def __init__(self) -> None:
        self.settings: RedisBindingSettings | None = None
        self._name = ""
        self._client: Redis | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(RedisBindingSettings, metadata.properties)
        self._name = metadata.name
        self._client, _ = await connect(settings, what=f"binding {self._name!r}", log=_log)
        self.settings = settings

    def operations(self) -> Sequence[str]:
        return _OPERATIONS

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()  # closes the pool too (Redis.from_pool)

    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        if req.operation not in _OPERATIONS:
            raise UnsupportedOperationError(
                f"binding {self._name!r} does not support operation {req.operation!r}; "
                f"supported operations: {', '.join(_OPERATIONS)}"
            )
        key = _key(req.metadata)
        client = self._redis()
        if req.operation == "get":
            getdel = _delete_after_get(req.metadata)
            with self._failures(f"get of key {key!r}"):
                value = await (client.getdel(key) if getdel else client.get(key))
            # As in Dapr, a missing key is an empty body, not an error.
            return InvokeResponse(data=value.encode() if isinstance(value, str) else value or b"")
        if req.operation == "create":
            ttl = _ttl(req.metadata)
            with self._failures(f"create of key {key!r}"):
                await client.set(key, req.data, ex=ttl)
        elif req.operation == "increment":
            ttl = _ttl(req.metadata)
            with self._failures(f"increment of key {key!r}"):
                async with client.pipeline(transaction=True) as pipe:  # INCR and EXPIRE as one
                    pipe.incr(key)
                    if ttl is not None:
                        pipe.expire(key, ttl)
                    await pipe.execute()
        else:  # delete
            with self._failures(f"delete of key {key!r}"):
                await client.delete(key)
        return InvokeResponse()

    def _redis(self) -> Redis:
        if self._client is None:
            raise ComponentError(f"binding {self._name!r} is not initialised or closed")
        return self._client

    @contextmanager
    def _failures(self, action: str) -> Iterator[None]:
        """Turn driver errors into ComponentError naming the binding and the action."""
        try:
            yield
        except RedisError as exc:
            raise ComponentError(f"binding {self._name!r}: {action} failed: {exc}") from exc
