"""Bad input gets a clear 4xx with an errorCode and a message naming the field.

One sidecar on the in-memory store (input handling is the same for every
store). None of these may produce a 5xx or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import write_store
from tests.integration.harness import SidecarProcess
from tests.integration.http import Reply, call


@pytest.fixture(scope="module")
def sc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root: Path = tmp_path_factory.mktemp("badinput")
    resources = write_store(root / "resources", "state.in-memory", "x")
    proc = SidecarProcess(
        [resources], app_id="bad", home=root / "home", extra_args=["--max-body-size", "16Ki"]
    )
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()
        assert "Traceback" not in proc.output


def error(r: Reply, status: int, code: str, *mentions: str) -> None:
    assert r.status == status, (r.status, r.body)
    body = r.json()
    assert body["errorCode"] == code, body
    for m in mentions:
        assert m in body["message"], body


def test_malformed_json_is_400(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", data=b'[{"key": "a", ')
    error(r, 400, "ERR_MALFORMED_REQUEST", "JSON")


def test_body_that_is_not_an_array_is_400(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json={"key": "a"})
    error(r, 400, "ERR_MALFORMED_REQUEST", "array")


def test_missing_key_is_400_naming_key(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "ok"}, {"value": 1}])
    error(r, 400, "ERR_MALFORMED_REQUEST", "[1]", '"key"')


def test_unknown_store_is_400(sc: SidecarProcess) -> None:
    error(call("GET", f"{sc.http}/v1.0/state/nosuch/k"), 400, "ERR_STATE_STORE_NOT_FOUND", "nosuch")
    r = call("POST", f"{sc.http}/v1.0/state/nosuch", json=[{"key": "k", "value": 1}])
    error(r, 400, "ERR_STATE_STORE_NOT_FOUND")


def test_oversized_body_is_413(sc: SidecarProcess) -> None:
    big = [{"key": "big", "value": "x" * (32 * 1024)}]
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=big)
    error(r, 413, "ERR_BODY_READ", "--max-body-size")
    assert call("GET", f"{sc.http}/v1.0/state/statestore/big").status == 204


def test_key_with_separator_is_400(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "a||b", "value": 1}])
    error(r, 400, "ERR_MALFORMED_REQUEST", "||")


def test_bad_ttl_is_400_naming_ttl(sc: SidecarProcess) -> None:
    for ttl in ("soon", "-5"):
        item = {"key": "t", "value": 1, "metadata": {"ttlInSeconds": ttl}}
        r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[item])
        error(r, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds")


def test_bad_concurrency_is_400(sc: SidecarProcess) -> None:
    item = {"key": "c", "value": 1, "options": {"concurrency": "whoever-wins"}}
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[item])
    error(r, 400, "ERR_MALFORMED_REQUEST", "concurrency")
    r = call("DELETE", f"{sc.http}/v1.0/state/statestore/c?consistency=maybe")
    error(r, 400, "ERR_MALFORMED_REQUEST", "consistency")


def test_wrong_types_are_400(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": 5, "value": 1}])
    error(r, 400, "ERR_MALFORMED_REQUEST", "key")
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "m", "metadata": {"a": 1}}])
    error(r, 400, "ERR_MALFORMED_REQUEST", "metadata")
    r = call("POST", f"{sc.http}/v1.0/state/statestore/bulk", json={"keys": "a"})
    error(r, 400, "ERR_MALFORMED_REQUEST", "keys")
    r = call("POST", f"{sc.http}/v1.0/state/statestore/transaction", json={"operations": [1]})
    error(r, 400, "ERR_MALFORMED_REQUEST", "operations[0]")


def test_path_tricks_are_plain_keys(sc: SidecarProcess) -> None:
    # An escaped slash or dot-dot in a key is just part of the key, never a path.
    assert (
        call(
            "POST", f"{sc.http}/v1.0/state/statestore", json=[{"key": "../x/y", "value": 7}]
        ).status
        == 204
    )
    assert call("GET", f"{sc.http}/v1.0/state/statestore/..%2Fx%2Fy").json() == 7
    assert call("GET", f"{sc.http}/v1.0/state/statestore/x%2Fy").status == 204


def test_unknown_path_falls_back_to_invocation_error(sc: SidecarProcess) -> None:
    error(call("GET", f"{sc.http}/v1.0/nothing-here"), 404, "ERR_DIRECT_INVOKE")
    error(call("PATCH", f"{sc.http}/v1.0/state/statestore"), 404, "ERR_DIRECT_INVOKE")


def test_api_not_built_yet_is_501(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/actors/cart/1/method/add", json={"a": 1})
    error(r, 501, "ERR_API_UNIMPLEMENTED")


def test_publish_without_any_pubsub_is_400(sc: SidecarProcess) -> None:
    r = call("POST", f"{sc.http}/v1.0/publish/pubsub/orders", json={"a": 1})
    error(r, 400, "ERR_PUBSUB_NOT_CONFIGURED")


def test_lone_surrogate_is_400_naming_the_field(sc: SidecarProcess) -> None:
    body = b'[{"key": "s", "value": "\\ud800"}]'
    r = call("POST", f"{sc.http}/v1.0/state/statestore", data=body)
    error(r, 400, "ERR_MALFORMED_REQUEST", "[0].value")


def test_out_of_range_numbers_and_nul_keys_are_400(sc: SidecarProcess) -> None:
    item = {"key": "t", "value": 1, "metadata": {"ttlInSeconds": "99999999999999999999"}}
    r = call("POST", f"{sc.http}/v1.0/state/statestore", json=[item])
    error(r, 400, "ERR_MALFORMED_REQUEST", "ttlInSeconds")
    query = {"page": {"limit": 1, "token": "99999999999999999999999"}}
    r = call("POST", f"{sc.http}/v1.0-alpha1/state/statestore/query", json=query)
    error(r, 400, "ERR_STATE_QUERY", "page.token")
    error(
        call("GET", f"{sc.http}/v1.0/state/statestore/a%00b"), 400, "ERR_MALFORMED_REQUEST", "NUL"
    )


def test_put_metadata_with_empty_key_is_a_no_op(sc: SidecarProcess) -> None:
    assert call("PUT", f"{sc.http}/v1.0/metadata/", data=b"x").status == 204
    assert call("PUT", f"{sc.http}/v1.0/metadata/team", data=b"core").status == 204
    assert call("GET", f"{sc.http}/v1.0/metadata").json()["extended"]["team"] == "core"


def test_double_slashes_and_a_trailing_slash_still_reach_the_route(sc: SidecarProcess) -> None:
    saved = call(
        "POST", f"{sc.http}//v1.0//state/statestore/", json=[{"key": "slashy", "value": 1}]
    )
    assert saved.status == 204
    got = call("GET", f"{sc.http}/v1.0/state//statestore//slashy/?metadata.x=1")
    assert got.status == 200 and got.body == b"1"
    assert call("GET", f"{sc.http}//v1.0/metadata/").status == 200


def test_a_cleaned_path_that_matches_nothing_is_still_the_invoke_fallback(
    sc: SidecarProcess,
) -> None:
    error(call("GET", f"{sc.http}/v1.0//nothing//here/"), 404, "ERR_DIRECT_INVOKE")
