"""The state API over plain HTTP, against every store on its real backend.

Each test runs once per store type (see ``conftest.STORE_TYPES``), driving a
real ``daprlite`` process the way curl or any language's HTTP client would,
and asserting Dapr's status codes, headers and error codes.
"""

from __future__ import annotations

import time

from tests.integration.conftest import QUERYABLE
from tests.integration.harness import SidecarProcess
from tests.integration.http import call


def state_url(sc: SidecarProcess, store: str = "statestore") -> str:
    return f"{sc.http}/v1.0/state/{store}"


def save(sc: SidecarProcess, items: list[dict[str, object]], query: str = "") -> int:
    return call("POST", state_url(sc) + query, json=items).status


def test_save_then_get_returns_json_value_with_etag(
    store_sidecar: SidecarProcess, key: str
) -> None:
    assert save(store_sidecar, [{"key": key, "value": {"name": "Ada", "n": [1, 2]}}]) == 204
    r = call("GET", f"{state_url(store_sidecar)}/{key}")
    assert r.status == 200
    assert r.json() == {"name": "Ada", "n": [1, 2]}
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["ETag"]


def test_string_value_is_stored_as_its_json_encoding(
    store_sidecar: SidecarProcess, key: str
) -> None:
    save(store_sidecar, [{"key": key, "value": "hello"}])
    assert call("GET", f"{state_url(store_sidecar)}/{key}").body == b'"hello"'


def test_get_missing_key_is_204(store_sidecar: SidecarProcess, key: str) -> None:
    r = call("GET", f"{state_url(store_sidecar)}/{key}")
    assert r.status == 204 and r.body == b""


def test_save_with_stale_etag_returns_409_and_keeps_value(
    store_sidecar: SidecarProcess, key: str
) -> None:
    save(store_sidecar, [{"key": key, "value": 1}])
    old = call("GET", f"{state_url(store_sidecar)}/{key}").headers["ETag"]
    save(store_sidecar, [{"key": key, "value": 2}])
    r = call("POST", state_url(store_sidecar), json=[{"key": key, "value": 3, "etag": old}])
    assert r.status == 409
    assert r.json()["errorCode"] == "ERR_STATE_SAVE"
    assert call("GET", f"{state_url(store_sidecar)}/{key}").json() == 2


def test_save_with_current_etag_succeeds(store_sidecar: SidecarProcess, key: str) -> None:
    save(store_sidecar, [{"key": key, "value": 1}])
    etag = call("GET", f"{state_url(store_sidecar)}/{key}").headers["ETag"]
    assert save(store_sidecar, [{"key": key, "value": 2, "etag": etag}]) == 204
    assert call("GET", f"{state_url(store_sidecar)}/{key}").json() == 2


def test_malformed_etag_is_400(store_sidecar: SidecarProcess, key: str) -> None:
    save(store_sidecar, [{"key": key, "value": 1}])
    r = call("POST", state_url(store_sidecar), json=[{"key": key, "value": 2, "etag": "bad etag"}])
    assert r.status == 400
    assert r.json()["errorCode"] == "ERR_STATE_SAVE"
    r = call("DELETE", f"{state_url(store_sidecar)}/{key}", headers={"If-Match": "bad etag"})
    assert r.status == 400 and r.json()["errorCode"] == "ERR_STATE_DELETE"


def test_first_write_concurrency_refuses_second_insert(
    store_sidecar: SidecarProcess, key: str
) -> None:
    item = {"key": key, "value": 1, "options": {"concurrency": "first-write"}}
    assert save(store_sidecar, [item]) == 204
    r = call("POST", state_url(store_sidecar), json=[{**item, "value": 2}])
    assert r.status == 409
    assert call("GET", f"{state_url(store_sidecar)}/{key}").json() == 1


def test_delete_honours_if_match(store_sidecar: SidecarProcess, key: str) -> None:
    save(store_sidecar, [{"key": key, "value": 1}])
    old = call("GET", f"{state_url(store_sidecar)}/{key}").headers["ETag"]
    save(store_sidecar, [{"key": key, "value": 2}])
    r = call("DELETE", f"{state_url(store_sidecar)}/{key}", headers={"If-Match": old})
    assert r.status == 409 and r.json()["errorCode"] == "ERR_STATE_DELETE"
    current = call("GET", f"{state_url(store_sidecar)}/{key}").headers["ETag"]
    r = call("DELETE", f"{state_url(store_sidecar)}/{key}", headers={"If-Match": current})
    assert r.status == 204
    assert call("GET", f"{state_url(store_sidecar)}/{key}").status == 204


def test_bulk_get_returns_raw_json_and_missing_keys(
    store_sidecar: SidecarProcess, key: str
) -> None:
    save(store_sidecar, [{"key": f"{key}-a", "value": {"x": 1}}, {"key": f"{key}-b", "value": "s"}])
    r = call(
        "POST",
        f"{state_url(store_sidecar)}/bulk",
        json={"keys": [f"{key}-a", f"{key}-b", f"{key}-none"], "parallelism": 2},
    )
    assert r.status == 200
    items = r.json()
    assert [i["key"] for i in items] == [f"{key}-a", f"{key}-b", f"{key}-none"]
    assert items[0]["data"] == {"x": 1} and items[0]["etag"]
    assert items[1]["data"] == "s"
    assert items[2] == {"key": f"{key}-none"}


def test_transaction_applies_all_operations(store_sidecar: SidecarProcess, key: str) -> None:
    save(store_sidecar, [{"key": f"{key}-old", "value": 0}])
    body = {
        "operations": [
            {"operation": "upsert", "request": {"key": f"{key}-1", "value": {"v": 1}}},
            {"operation": "delete", "request": {"key": f"{key}-old"}},
        ]
    }
    r = call("POST", f"{state_url(store_sidecar)}/transaction", json=body)
    assert r.status == 204, r.body
    assert call("GET", f"{state_url(store_sidecar)}/{key}-1").json() == {"v": 1}
    assert call("GET", f"{state_url(store_sidecar)}/{key}-old").status == 204


def test_transaction_with_stale_etag_is_500_and_applies_nothing(
    store_sidecar: SidecarProcess, key: str
) -> None:
    save(store_sidecar, [{"key": key, "value": 1}])
    old = call("GET", f"{state_url(store_sidecar)}/{key}").headers["ETag"]
    save(store_sidecar, [{"key": key, "value": 2}])
    body = {
        "operations": [
            {"operation": "upsert", "request": {"key": f"{key}-new", "value": 1}},
            {"operation": "upsert", "request": {"key": key, "value": 3, "etag": old}},
        ]
    }
    r = call("POST", f"{state_url(store_sidecar)}/transaction", json=body)
    assert r.status == 500 and r.json()["errorCode"] == "ERR_STATE_TRANSACTION"
    assert call("GET", f"{state_url(store_sidecar)}/{key}-new").status == 204


def test_unknown_transaction_operation_is_400(store_sidecar: SidecarProcess, key: str) -> None:
    body = {"operations": [{"operation": "merge", "request": {"key": key, "value": 1}}]}
    r = call("POST", f"{state_url(store_sidecar)}/transaction", json=body)
    assert r.status == 400
    assert r.json()["errorCode"] == "ERR_NOT_SUPPORTED_STATE_OPERATION"
    assert "operations[0].operation" in r.json()["message"]


def test_ttl_expires_key_and_get_reports_expire_time(
    store_sidecar: SidecarProcess, key: str
) -> None:
    save(store_sidecar, [{"key": key, "value": 1, "metadata": {"ttlInSeconds": "1"}}])
    r = call("GET", f"{state_url(store_sidecar)}/{key}")
    assert r.status == 200 and r.headers["metadata.ttlExpireTime"]
    time.sleep(1.6)
    assert call("GET", f"{state_url(store_sidecar)}/{key}").status == 204


def test_ttl_from_query_metadata_applies_to_every_item(
    store_sidecar: SidecarProcess, key: str
) -> None:
    assert save(store_sidecar, [{"key": key, "value": 1}], "?metadata.ttlInSeconds=100") == 204
    assert call("GET", f"{state_url(store_sidecar)}/{key}").headers["metadata.ttlExpireTime"]


def test_query_filters_and_sorts_or_reports_unsupported(
    store_sidecar: SidecarProcess, key: str
) -> None:
    items = [{"key": f"{key}-{i}", "value": {"run": key, "n": i}} for i in range(5)]
    save(store_sidecar, items)
    query = {
        "filter": {"AND": [{"EQ": {"run": key}}, {"GTE": {"n": 2}}]},
        "sort": [{"key": "n", "order": "DESC"}],
    }
    r = call("POST", f"{store_sidecar.http}/v1.0-alpha1/state/statestore/query", json=query)
    if store_sidecar.store_type in QUERYABLE:  # type: ignore[attr-defined]
        assert r.status == 200, r.body
        results = r.json()["results"]
        assert [x["key"] for x in results] == [f"{key}-4", f"{key}-3", f"{key}-2"]
        assert results[0]["data"] == {"run": key, "n": 4}
    else:
        assert r.status == 500
        assert r.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"


def test_malformed_query_is_400_naming_the_operator(store_sidecar: SidecarProcess) -> None:
    r = call(
        "POST",
        f"{store_sidecar.http}/v1.0-alpha1/state/statestore/query",
        json={"filter": {"LIKE": {"a": 1}}},
    )
    if store_sidecar.store_type in QUERYABLE:  # type: ignore[attr-defined]
        assert r.status == 400
        assert r.json()["errorCode"] == "ERR_STATE_QUERY" and "LIKE" in r.json()["message"]
    else:  # support is checked before the query is read
        assert r.json()["errorCode"] == "ERR_STATE_STORE_NOT_SUPPORTED"
