"""Decoding ``state.redis`` metadata into RedisSettings; no Redis server needed."""

from __future__ import annotations

import socket

import pytest

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode
from daprlite.components.state.redis import RedisSettings, RedisStateStore


def _settings(**props: str) -> RedisSettings:
    return decode(RedisSettings, props)


@pytest.mark.parametrize("props", [{}, {"redisHost": ""}, {"redisPassword": "p"}])
def test_missing_redis_host_is_an_error_naming_it(props: dict[str, str]) -> None:
    with pytest.raises(MetadataError) as err:
        decode(RedisSettings, props)
    assert err.value.field == "redisHost"


def test_names_are_case_insensitive_and_defaults_apply() -> None:
    s = _settings(REDISHOST="cache:6380", redisdb="2")
    assert s.address() == ("cache", 6380)
    assert s.redisDB == 2
    assert s.enableTLS is False
    assert s.socket_timeout() == 3.0
    assert s.ttlInSeconds is None


@pytest.mark.parametrize(
    ("props", "address"),
    [
        ({"redisHost": "cache"}, ("cache", 6379)),
        ({"redisHost": "cache", "redisPort": "6390"}, ("cache", 6390)),
        ({"redisHost": "cache:7000", "redisPort": "6390"}, ("cache", 7000)),
        ({"redisHost": "[::1]:7001"}, ("::1", 7001)),
        ({"redisHost": "::1"}, ("::1", 6379)),
    ],
)
def test_host_and_port_are_parsed(props: dict[str, str], address: tuple[str, int]) -> None:
    assert _settings(**props).address() == address


@pytest.mark.parametrize("value", ["abc", "1.5", "-1"])
def test_bad_redis_db_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost="cache:6379", redisDB=value)
    assert err.value.field == "redisDB"


@pytest.mark.parametrize(
    "host", ["cache:port", "cache:70000", ":6379", "a:6379,b:6379", "redis://cache:6379"]
)
def test_malformed_redis_host_is_an_error_naming_it(host: str) -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost=host)
    assert err.value.field == "redisHost"


def test_cluster_type_is_rejected_as_not_supported_yet() -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost="cache:6379", redisType="Cluster")
    assert err.value.field == "redisType"
    assert "not supported" in str(err.value)


def test_unknown_redis_type_names_the_valid_values() -> None:
    with pytest.raises(MetadataError, match="'node' or 'cluster'") as err:
        _settings(redisHost="cache:6379", redisType="sentinel")
    assert err.value.field == "redisType"


def test_failover_is_rejected_as_not_supported_yet() -> None:
    with pytest.raises(MetadataError, match="not supported") as err:
        _settings(redisHost="cache:6379", failover="true")
    assert err.value.field == "failover"


def test_client_cert_without_key_is_an_error_naming_the_key() -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost="cache:6379", enableTLS="true", clientCert="/etc/tls/client.crt")
    assert err.value.field == "clientKey"


@pytest.mark.parametrize(
    ("field", "value"),
    [("dialTimeout", "soon"), ("enableTLS", "maybe"), ("ttlInSeconds", "-5"), ("poolSize", "0")],
)
def test_bad_values_are_errors_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost="cache:6379", **{field: value})
    assert err.value.field == field


def test_timeouts_follow_go_redis_conventions() -> None:
    s = _settings(redisHost="cache", readTimeout="2s", writeTimeout="5s")
    assert s.socket_timeout() == 5.0  # one socket timeout covers both directions
    assert s.pool_timeout() == 3.0  # readTimeout + 1s
    assert _settings(redisHost="cache", readTimeout="-1").socket_timeout() is None
    assert _settings(redisHost="cache", readTimeout="0").socket_timeout() == 3.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_fails_init_naming_host_but_not_password() -> None:
    port = _closed_port()
    store = RedisStateStore()
    meta = ComponentMetadata(
        name="cache",
        type="state.redis",
        properties={"redisHost": f"127.0.0.1:{port}", "redisPassword": "s3cr3t-pw"},
    )
    with pytest.raises(ComponentError) as err:
        await store.init(meta)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "s3cr3t-pw" not in str(err.value)
    await store.close()


def test_credentials_in_redis_host_are_refused_without_echoing_them() -> None:
    with pytest.raises(MetadataError) as err:
        _settings(redisHost="user:TOPSECRET@localhost:6379").address()
    assert err.value.field == "redisHost" and "TOPSECRET" not in str(err.value)
