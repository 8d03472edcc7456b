"""The official Dapr Python SDK, unmodified, against every store.

gRPC: ``DaprClient`` (state, bulk, transactions, etag conflicts, metadata,
query). HTTP: the SDK's own ``DaprHttpClient`` and its sidecar health wait.
When the SDK and our reading of the docs disagree, the SDK wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions
from dapr.conf import settings

from tests.integration.conftest import QUERYABLE
from tests.integration.harness import SidecarProcess


@pytest.fixture
def sdk_settings(store_sidecar: SidecarProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads its sidecar address from settings (env DAPR_HTTP_PORT etc.).
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", store_sidecar.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", store_sidecar.grpc_port)
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 10)


@pytest.fixture
def client(store_sidecar: SidecarProcess, sdk_settings: None) -> Iterator[DaprClient]:
    with DaprClient(address=f"127.0.0.1:{store_sidecar.grpc_port}") as c:
        yield c


def test_save_get_delete_state(client: DaprClient, key: str) -> None:
    client.save_state("statestore", key, "hello")
    got = client.get_state("statestore", key)
    assert got.data == b"hello" and got.etag
    client.delete_state("statestore", key)
    assert client.get_state("statestore", key).data == b""


def test_bytes_saved_over_grpc_read_back_verbatim(client: DaprClient, key: str) -> None:
    raw = bytes(range(256))
    client.save_state("statestore", key, raw)
    assert client.get_state("statestore", key).data == raw


def test_stale_etag_is_aborted_and_value_kept(client: DaprClient, key: str) -> None:
    client.save_state("statestore", key, "v1")
    old = client.get_state("statestore", key).etag
    client.save_state("statestore", key, "v2")
    with pytest.raises(DaprGrpcError) as err:
        client.save_state("statestore", key, "v3", etag=old)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert err.value.error_code() == "ERR_STATE_SAVE"
    with pytest.raises(DaprGrpcError) as err:
        client.delete_state("statestore", key, etag=old)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert client.get_state("statestore", key).data == b"v2"


def test_matching_etag_and_first_write(client: DaprClient, key: str) -> None:
    client.save_state("statestore", key, "v1")
    etag = client.get_state("statestore", key).etag
    client.save_state("statestore", key, "v2", etag=etag)
    first = StateOptions(concurrency=Concurrency.first_write)
    client.save_state("statestore", f"{key}-fw", "a", options=first)
    with pytest.raises(DaprGrpcError) as err:
        client.save_state("statestore", f"{key}-fw", "b", options=first)
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert client.get_state("statestore", f"{key}-fw").data == b"a"


def test_malformed_etag_is_invalid_argument(client: DaprClient, key: str) -> None:
    client.save_state("statestore", key, "v1")
    with pytest.raises(DaprGrpcError) as err:
        client.save_state("statestore", key, "v2", etag="not an etag")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bulk_save_and_bulk_get(client: DaprClient, key: str) -> None:
    client.save_bulk_state(
        "statestore", [StateItem(f"{key}-1", "one"), StateItem(f"{key}-2", "two")]
    )
    items = client.get_bulk_state("statestore", [f"{key}-1", f"{key}-2", f"{key}-3"]).items
    assert [(i.key, i.data) for i in items] == [
        (f"{key}-1", b"one"),
        (f"{key}-2", b"two"),
        (f"{key}-3", b""),
    ]
    assert items[0].etag and not items[2].etag


def test_execute_state_transaction(client: DaprClient, key: str) -> None:
    client.save_state("statestore", f"{key}-gone", "x")
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key=f"{key}-new", data="created"),
            TransactionalStateOperation(
                key=f"{key}-gone", operation_type=TransactionOperationType.delete
            ),
        ],
    )
    assert client.get_state("statestore", f"{key}-new").data == b"created"
    assert client.get_state("statestore", f"{key}-gone").data == b""


def test_transaction_with_stale_etag_is_internal_and_atomic(client: DaprClient, key: str) -> None:
    client.save_state("statestore", key, "v1")
    old = client.get_state("statestore", key).etag
    client.save_state("statestore", key, "v2")
    with pytest.raises(DaprGrpcError) as err:
        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation(key=f"{key}-side", data="x"),
                TransactionalStateOperation(key=key, data="v3", etag=old),
            ],
        )
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert client.get_state("statestore", f"{key}-side").data == b""


def test_unknown_store_and_empty_key_are_invalid_argument(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as err:
        client.get_state("nosuch", "k")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.error_code() == "DAPR_STATE_NOT_FOUND"
    with pytest.raises(DaprGrpcError) as err:
        client.save_state("statestore", "", "v")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_metadata_lists_store_with_capabilities(
    client: DaprClient, store_sidecar: SidecarProcess
) -> None:
    meta = client.get_metadata()
    assert meta.application_id == "itapp"
    (store,) = [c for c in meta.registered_components if c.name == "statestore"]
    assert store.type == store_sidecar.store_type  # type: ignore[attr-defined]
    assert {"ETAG", "TRANSACTIONAL", "TTL"} <= set(store.capabilities)
    assert meta.extended_metadata["daprRuntimeVersion"]
    client.set_metadata("team", "payments")
    assert client.get_metadata().extended_metadata["team"] == "payments"


def test_query_state(client: DaprClient, store_sidecar: SidecarProcess, key: str) -> None:
    for i in range(4):
        client.save_state(
            "statestore",
            f"{key}-{i}",
            json.dumps({"run": key, "n": i}),
            state_metadata={"contentType": "application/json"},
        )
    query = json.dumps(
        {"filter": {"AND": [{"EQ": {"run": key}}, {"GT": {"n": 1}}]}, "sort": [{"key": "n"}]}
    )
    if store_sidecar.store_type not in QUERYABLE:  # type: ignore[attr-defined]
        with pytest.raises(DaprGrpcError) as err:
            client.query_state("statestore", query)
        assert err.value.error_code() == "DAPR_STATE_QUERYING_NOT_SUPPORTED"
        return
    res = client.query_state("statestore", query)
    assert [r.key for r in res.results] == [f"{key}-2", f"{key}-3"]
    assert res.results[0].json() == {"run": key, "n": 2}


def test_rpc_not_implemented_is_unimplemented(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as err:
        client.try_lock("lockstore", "resource", "owner", expiry_in_seconds=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]


async def test_sdk_http_client_saves_and_reads_state(
    store_sidecar: SidecarProcess, sdk_settings: None, key: str
) -> None:
    from dapr.clients.http.client import DaprHttpClient
    from dapr.serializers import DefaultJSONSerializer

    http = DaprHttpClient(DefaultJSONSerializer(), timeout=10)
    base = f"{store_sidecar.http}/v1.0/state/statestore"
    body = json.dumps([{"key": key, "value": {"via": "sdk-http"}}]).encode()
    await http.send_bytes("POST", base, body, headers={"Content-Type": "application/json"})
    data, resp = await http.send_bytes("GET", f"{base}/{key}", None)
    assert json.loads(data) == {"via": "sdk-http"}
    assert resp.headers["ETag"]
