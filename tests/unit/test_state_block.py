"""The state block's own rules: key prefixes, key validation, TTL and option parsing."""

from __future__ import annotations

import pytest

from daprlite import errors
from daprlite.blocks.state import DeleteItem, SaveItem, StateAPI, key_prefix
from daprlite.components.state.inmemory import InMemoryStateStore
from daprlite.runtime.registry import ComponentStore, LiveComponent


def live(prefix: str | None, name: str = "store") -> LiveComponent:
    props = {} if prefix is None else {"keyPrefix": prefix}
    return LiveComponent(name, "state.in-memory", "v1", "state", InMemoryStateStore(), props)


@pytest.mark.parametrize(
    ("mode", "namespace", "expected"),
    [
        (None, "", "app"),
        ("AppID", "", "app"),
        ("name", "", "store"),
        ("namespace", "prod", "prod.app"),
        ("namespace", "", "app"),
        ("none", "", ""),
        ("custom", "", "custom"),
    ],
)
def test_key_prefix_modes(mode: str | None, namespace: str, expected: str) -> None:
    assert key_prefix(live(mode), "app", namespace) == expected


def api() -> StateAPI:
    store = ComponentStore()
    store.add(live(None))
    return StateAPI(store, "app")


async def test_no_state_store_configured_is_500() -> None:
    with pytest.raises(errors.APIError) as err:
        await StateAPI(ComponentStore(), "app").get("store", "k", {})
    assert err.value.code == "ERR_STATE_STORE_NOT_CONFIGURED" and err.value.http_status == 500


async def test_ttl_zero_means_no_ttl_and_values_are_validated() -> None:
    a = api()
    await a.save("store", [SaveItem("k", b"1", metadata={"ttlInSeconds": "0"})])
    got = await a.get("store", "k", {})
    assert got is not None and "ttlExpireTime" not in got.metadata
    with pytest.raises(errors.APIError) as err:
        await a.save("store", [SaveItem("k", b"1", metadata={"TTLINSECONDS": "1.5"})])
    assert "ttlInSeconds" in err.value.message and err.value.http_status == 400


async def test_empty_key_and_bad_options_name_the_field() -> None:
    a = api()
    with pytest.raises(errors.APIError) as err:
        await a.save("store", [SaveItem("ok", b"1"), SaveItem("", b"1")])
    assert "states[1].key" in err.value.message
    with pytest.raises(errors.APIError) as err:
        await a.delete("store", DeleteItem("k", concurrency="sometimes"))
    assert "concurrency" in err.value.message and err.value.http_status == 400


async def test_stale_etag_maps_to_409_aborted() -> None:
    a = api()
    await a.save("store", [SaveItem("k", b"1")])
    got = await a.get("store", "k", {})
    await a.save("store", [SaveItem("k", b"2")])
    assert got is not None
    with pytest.raises(errors.APIError) as err:
        await a.save("store", [SaveItem("k", b"3", etag=got.etag)])
    assert err.value.http_status == 409 and err.value.grpc_status.name == "ABORTED"
