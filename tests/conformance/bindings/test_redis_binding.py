"""``bindings.redis`` against the real Redis server of ``tests/services.py``.

Each test works under its own random key prefix and deletes every key under
it afterwards. Assertions read Redis directly (a second client) where a user
would: the value another program sees, the TTL Redis holds.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis

from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.bindings.redis import RedisBinding
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from tests.services import REDIS_HOST


@dataclass
class Cache:
    binding: RedisBinding
    direct: aioredis.Redis  # a plain client, to see what other programs see
    prefix: str

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def run(self, operation: str, data: bytes = b"", **metadata: str) -> InvokeResponse:
        return await self.binding.invoke(InvokeRequest(operation, data, metadata))


def _meta(**props: str) -> ComponentMetadata:
    return ComponentMetadata(name="cache", type="bindings.redis", properties=props)


@pytest.fixture
async def cache() -> AsyncIterator[Cache]:
    prefix = f"binding-test-{uuid.uuid4().hex[:12]}"
    binding = RedisBinding()
    await binding.init(_meta(redisHost=REDIS_HOST))
    direct = aioredis.from_url(f"redis://{REDIS_HOST}")
    try:
        yield Cache(binding, direct, prefix)
    finally:
        await binding.close()
        try:
            async for k in direct.scan_iter(match=f"{prefix}:*"):
                await direct.delete(k)
        finally:
            await direct.aclose()


# -- contract ------------------------------------------------------------------------


def test_registered_type_resolves_to_the_binding() -> None:
    assert Registry().resolve("bindings.redis") is RedisBinding


async def test_binding_is_an_output_binding_listing_its_operations(cache: Cache) -> None:
    assert isinstance(cache.binding, OutputBinding)
    assert set(cache.binding.operations()) == {"create", "get", "delete", "increment"}


async def test_unsupported_operation_is_refused_and_touches_nothing(cache: Cache) -> None:
    with pytest.raises(UnsupportedOperationError, match="supported operations"):
        await cache.run("list", key=cache.key("a"))
    assert await cache.direct.exists(cache.key("a")) == 0


# -- create / get / delete -----------------------------------------------------------


async def test_create_stores_a_plain_string_other_clients_can_read(cache: Cache) -> None:
    resp = await cache.run("create", b'{"name": "x"}', key=cache.key("doc"))
    assert resp.data is None  # no body: HTTP 204
    assert await cache.direct.get(cache.key("doc")) == b'{"name": "x"}'


async def test_get_returns_the_bytes_verbatim(cache: Cache) -> None:
    value = bytes(range(256))
    await cache.run("create", value, key=cache.key("bin"))
    assert (await cache.run("get", key=cache.key("bin"))).data == value


async def test_create_overwrites_an_existing_value(cache: Cache) -> None:
    await cache.run("create", b"one", key=cache.key("k"))
    await cache.run("create", b"two", key=cache.key("k"))
    assert (await cache.run("get", key=cache.key("k"))).data == b"two"


async def test_get_of_a_missing_key_returns_an_empty_body_not_an_error(cache: Cache) -> None:
    resp = await cache.run("get", key=cache.key("never-written"))
    assert resp.data == b""


async def test_get_with_delete_true_returns_the_value_and_removes_the_key(cache: Cache) -> None:
    await cache.run("create", b"once", key=cache.key("token"))
    resp = await cache.run("get", key=cache.key("token"), delete="true")
    assert resp.data == b"once"
    assert await cache.direct.exists(cache.key("token")) == 0
    assert (await cache.run("get", key=cache.key("token"), delete="true")).data == b""


async def test_get_with_delete_false_keeps_the_key(cache: Cache) -> None:
    await cache.run("create", b"keep", key=cache.key("k"))
    assert (await cache.run("get", key=cache.key("k"), delete="false")).data == b"keep"
    assert await cache.direct.get(cache.key("k")) == b"keep"


async def test_delete_removes_the_key_and_is_fine_on_a_missing_one(cache: Cache) -> None:
    await cache.run("create", b"v", key=cache.key("gone"))
    assert (await cache.run("delete", key=cache.key("gone"))).data is None
    assert await cache.direct.exists(cache.key("gone")) == 0
    await cache.run("delete", key=cache.key("gone"))  # again: no error


# -- TTL -----------------------------------------------------------------------------


async def test_create_with_ttl_sets_an_expiry_and_the_key_disappears(cache: Cache) -> None:
    await cache.run("create", b"short", key=cache.key("ttl"), ttlInSeconds="1")
    assert 0 < await cache.direct.pttl(cache.key("ttl")) <= 1000
    assert (await cache.run("get", key=cache.key("ttl"))).data == b"short"
    await asyncio.sleep(1.3)
    assert (await cache.run("get", key=cache.key("ttl"))).data == b""


async def test_create_without_ttl_clears_an_earlier_expiry(cache: Cache) -> None:
    await cache.run("create", b"a", key=cache.key("k"), ttlInSeconds="100")
    await cache.run("create", b"b", key=cache.key("k"))
    assert await cache.direct.ttl(cache.key("k")) == -1  # SET drops the old expiry


@pytest.mark.parametrize("ttl", ["abc", "1.5", "0", "-3"])
async def test_bad_ttl_is_an_error_naming_it_and_writes_nothing(cache: Cache, ttl: str) -> None:
    with pytest.raises(MetadataError) as err:
        await cache.run("create", b"v", key=cache.key("k"), ttlInSeconds=ttl)
    assert err.value.field == "ttlInSeconds"
    assert await cache.direct.exists(cache.key("k")) == 0


# -- increment -----------------------------------------------------------------------


async def test_increment_counts_from_zero(cache: Cache) -> None:
    for _ in range(3):
        assert (await cache.run("increment", key=cache.key("n"))).data is None
    assert await cache.direct.get(cache.key("n")) == b"3"
    assert (await cache.run("get", key=cache.key("n"))).data == b"3"


async def test_concurrent_increments_are_all_counted(cache: Cache) -> None:
    await asyncio.gather(*(cache.run("increment", key=cache.key("n")) for _ in range(50)))
    assert await cache.direct.get(cache.key("n")) == b"50"


async def test_increment_with_ttl_sets_an_expiry(cache: Cache) -> None:
    await cache.run("increment", key=cache.key("n"), ttlInSeconds="1")
    assert 0 < await cache.direct.pttl(cache.key("n")) <= 1000
    await asyncio.sleep(1.3)
    assert await cache.direct.exists(cache.key("n")) == 0


async def test_increment_of_a_non_integer_value_fails_and_keeps_it(cache: Cache) -> None:
    await cache.run("create", b"hello", key=cache.key("s"))
    with pytest.raises(ComponentError, match="increment of key"):
        await cache.run("increment", key=cache.key("s"))
    assert await cache.direct.get(cache.key("s")) == b"hello"


# -- bad requests --------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["create", "get", "delete", "increment"])
async def test_missing_key_is_an_error_naming_key(cache: Cache, operation: str) -> None:
    with pytest.raises(MetadataError) as err:
        await cache.run(operation, b"v")
    assert err.value.field == "key"
    with pytest.raises(MetadataError) as err:
        await cache.run(operation, b"v", key="")
    assert err.value.field == "key"


async def test_bad_delete_flag_is_an_error_naming_it_and_keeps_the_key(cache: Cache) -> None:
    await cache.run("create", b"v", key=cache.key("k"))
    with pytest.raises(MetadataError) as err:
        await cache.run("get", key=cache.key("k"), delete="maybe")
    assert err.value.field == "delete"
    assert await cache.direct.get(cache.key("k")) == b"v"


async def test_get_of_a_key_holding_another_type_is_a_component_error(cache: Cache) -> None:
    await cache.direct.hset(cache.key("h"), "f", "v")
    with pytest.raises(ComponentError, match="'cache'"):
        await cache.run("get", key=cache.key("h"))


async def test_calls_after_close_fail_clearly(cache: Cache) -> None:
    await cache.binding.close()
    with pytest.raises(ComponentError, match="closed"):
        await cache.run("get", key=cache.key("k"))


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize("props", [{}, {"redisHost": ""}, {"redisPassword": "p"}])
async def test_missing_redis_host_fails_init_naming_it(props: dict[str, str]) -> None:
    with pytest.raises(MetadataError) as err:
        await RedisBinding().init(_meta(**props))
    assert err.value.field == "redisHost"


async def test_connection_settings_are_the_state_stores(cache: Cache) -> None:
    # Same names, same checks: an unsupported cluster type is refused the same way.
    with pytest.raises(MetadataError) as err:
        await RedisBinding().init(_meta(redisHost=REDIS_HOST, redisType="cluster"))
    assert err.value.field == "redisType"


async def test_redis_db_selects_the_database(cache: Cache) -> None:
    binding = RedisBinding()
    await binding.init(_meta(redisHost=REDIS_HOST, redisDB="3"))
    try:
        await binding.invoke(InvokeRequest("create", b"in-db-3", {"key": cache.key("db")}))
        assert await cache.direct.exists(cache.key("db")) == 0  # not in db 0
        db3 = aioredis.from_url(f"redis://{REDIS_HOST}/3")
        try:
            assert await db3.get(cache.key("db")) == b"in-db-3"
        finally:
            await db3.delete(cache.key("db"))
            await db3.aclose()
    finally:
        await binding.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_fails_init_naming_host_but_not_password() -> None:
    port = _closed_port()
    binding = RedisBinding()
    with pytest.raises(ComponentError) as err:
        await binding.init(_meta(redisHost=f"127.0.0.1:{port}", redisPassword="s3cr3t-pw"))
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "binding 'cache'" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)
    await binding.close()
