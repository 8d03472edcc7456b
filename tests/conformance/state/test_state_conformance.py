"""One conformance suite for every state store, gated by the features it claims.

Each test runs against every store in ``conftest.STORE_TYPES`` on its real
backend. Optional behaviour (TTL, transactions, query) is tested only where
the store claims the feature, and a store must not claim a feature whose
Protocol it does not implement (nor implement one it does not claim).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from daprlite.components.errors import ETagInvalidError, ETagMismatchError
from daprlite.components.state.api import (
    BulkStateStore,
    Concurrency,
    DeleteRequest,
    Feature,
    GetRequest,
    QueryableStateStore,
    QueryRequest,
    SetRequest,
    StateStore,
    TransactionalStateStore,
)
from daprlite.components.state.query import parse_query
from tests.conformance.state.conftest import QUERYABLE_TYPES, StoreUnderTest


async def _get(sut: StoreUnderTest, name: str):
    return await sut.store.get(GetRequest(sut.key(name)))


async def _set(sut: StoreUnderTest, name: str, value: bytes, **kw: object) -> None:
    await sut.store.set(SetRequest(sut.key(name), value, **kw))


def _features(sut: StoreUnderTest) -> frozenset[Feature]:
    return sut.store.features()


# -- contract shape ------------------------------------------------------------------


def test_store_implements_required_protocol(sut: StoreUnderTest) -> None:
    assert isinstance(sut.store, StateStore)
    assert Feature.ETAG in _features(sut)


def test_claimed_features_match_implemented_protocols(sut: StoreUnderTest) -> None:
    feats = _features(sut)
    assert (Feature.TRANSACTIONAL in feats) == isinstance(sut.store, TransactionalStateStore)
    assert (Feature.QUERY_API in feats) == isinstance(sut.store, QueryableStateStore)
    assert isinstance(sut.store, BulkStateStore)


def test_query_support_matches_the_queryable_list(sut: StoreUnderTest) -> None:
    assert (Feature.QUERY_API in _features(sut)) == (sut.type in QUERYABLE_TYPES)


# -- get / set / delete ------------------------------------------------------------


async def test_get_missing_key_returns_none(sut: StoreUnderTest) -> None:
    assert await _get(sut, "never-written") is None


async def test_set_then_get_returns_bytes_verbatim_with_etag(sut: StoreUnderTest) -> None:
    for name, value in [
        ("json", b'{"b": 2,   "a": [1, 2]}'),
        ("string", b'"quoted"'),
        ("binary", bytes(range(256))),
        ("empty", b""),
        ("unicode-ключ", "значение ✓".encode()),
    ]:
        await _set(sut, name, value)
        got = await _get(sut, name)
        assert got is not None, name
        assert got.data == value, name
        assert got.etag, name


async def test_overwrite_changes_etag(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    first = await _get(sut, "k")
    await _set(sut, "k", b"2")
    second = await _get(sut, "k")
    assert first is not None and second is not None
    assert second.data == b"2"
    assert second.etag != first.etag


async def test_large_value_round_trips(sut: StoreUnderTest) -> None:
    value = json.dumps({"blob": "x" * (1024 * 1024)}).encode()
    await _set(sut, "big", value)
    got = await _get(sut, "big")
    assert got is not None and got.data == value


async def test_delete_removes_key_and_missing_delete_is_fine(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    await sut.store.delete(DeleteRequest(sut.key("k")))
    assert await _get(sut, "k") is None
    await sut.store.delete(DeleteRequest(sut.key("k")))  # no error


# -- etags and concurrency -----------------------------------------------------------


async def test_save_with_current_etag_succeeds(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    got = await _get(sut, "k")
    assert got is not None
    await _set(sut, "k", b"2", etag=got.etag)
    after = await _get(sut, "k")
    assert after is not None and after.data == b"2"


async def test_save_with_stale_etag_raises_mismatch_and_keeps_value(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    old = await _get(sut, "k")
    await _set(sut, "k", b"2")
    assert old is not None
    with pytest.raises(ETagMismatchError):
        await _set(sut, "k", b"3", etag=old.etag)
    kept = await _get(sut, "k")
    assert kept is not None and kept.data == b"2"


async def test_save_with_etag_on_missing_key_is_mismatch(sut: StoreUnderTest) -> None:
    await _set(sut, "other", b"1")
    issued = await _get(sut, "other")
    assert issued is not None
    with pytest.raises(ETagMismatchError):
        await _set(sut, "absent", b"1", etag=issued.etag)
    assert await _get(sut, "absent") is None


async def test_malformed_etag_is_invalid_not_mismatch(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    with pytest.raises(ETagInvalidError):
        await _set(sut, "k", b"2", etag="not-an-etag!")
    with pytest.raises(ETagInvalidError):
        await sut.store.delete(DeleteRequest(sut.key("k"), etag="not-an-etag!"))
    kept = await _get(sut, "k")
    assert kept is not None and kept.data == b"1"


async def test_first_write_inserts_only_once(sut: StoreUnderTest) -> None:
    await _set(sut, "fw", b"1", concurrency=Concurrency.FIRST_WRITE)
    with pytest.raises(ETagMismatchError):
        await _set(sut, "fw", b"2", concurrency=Concurrency.FIRST_WRITE)
    got = await _get(sut, "fw")
    assert got is not None and got.data == b"1"
    # last-write without etag is a plain upsert
    await _set(sut, "fw", b"3", concurrency=Concurrency.LAST_WRITE)
    got = await _get(sut, "fw")
    assert got is not None and got.data == b"3"


async def test_concurrent_writers_with_same_etag_exactly_one_wins(sut: StoreUnderTest) -> None:
    await _set(sut, "race", b"0")
    base = await _get(sut, "race")
    assert base is not None

    async def attempt(i: int) -> bool:
        try:
            await _set(sut, "race", str(i).encode(), etag=base.etag)
            return True
        except ETagMismatchError:
            return False

    results = await asyncio.gather(*(attempt(i) for i in range(1, 9)))
    assert results.count(True) == 1
    final = await _get(sut, "race")
    assert final is not None and final.data == str(results.index(True) + 1).encode()


async def test_delete_with_stale_etag_keeps_value(sut: StoreUnderTest) -> None:
    await _set(sut, "k", b"1")
    old = await _get(sut, "k")
    await _set(sut, "k", b"2")
    assert old is not None
    with pytest.raises(ETagMismatchError):
        await sut.store.delete(DeleteRequest(sut.key("k"), etag=old.etag))
    current = await _get(sut, "k")
    assert current is not None and current.data == b"2"
    await sut.store.delete(DeleteRequest(sut.key("k"), etag=current.etag))
    assert await _get(sut, "k") is None


# -- bulk ------------------------------------------------------------------------------


async def test_bulk_get_returns_items_in_key_order_with_missing_ones(sut: StoreUnderTest) -> None:
    await _set(sut, "a", b"1")
    await _set(sut, "c", b"3")
    keys = [sut.key(n) for n in ("c", "b", "a")]
    items = await sut.store.bulk_get(keys, {})
    assert [i.key for i in items] == keys
    assert [i.data for i in items] == [b"3", None, b"1"]
    assert items[0].etag and items[1].etag is None


# -- TTL --------------------------------------------------------------------------------


async def test_ttl_expires_key_and_reports_expire_time(sut: StoreUnderTest) -> None:
    if Feature.TTL not in _features(sut):
        pytest.skip(f"{sut.type} does not claim TTL")
    await _set(sut, "short", b"1", ttl_seconds=1)
    await _set(sut, "long", b"1", ttl_seconds=3600)
    got = await _get(sut, "long")
    assert got is not None and got.metadata.get("ttlExpireTime", "").endswith("Z")
    await asyncio.sleep(1.6)
    assert await _get(sut, "short") is None
    assert await _get(sut, "long") is not None


async def test_ttl_minus_one_clears_previous_ttl(sut: StoreUnderTest) -> None:
    if Feature.TTL not in _features(sut):
        pytest.skip(f"{sut.type} does not claim TTL")
    await _set(sut, "k", b"1", ttl_seconds=1)
    await _set(sut, "k", b"2", ttl_seconds=-1)
    got = await _get(sut, "k")
    assert got is not None and "ttlExpireTime" not in got.metadata
    await asyncio.sleep(1.4)
    still = await _get(sut, "k")
    assert still is not None and still.data == b"2"


# -- transactions --------------------------------------------------------------------------


async def test_transaction_applies_upserts_and_deletes(sut: StoreUnderTest) -> None:
    if Feature.TRANSACTIONAL not in _features(sut):
        pytest.skip(f"{sut.type} does not claim TRANSACTIONAL")
    await _set(sut, "gone", b"x")
    await sut.store.multi(
        [
            SetRequest(sut.key("t1"), b"1"),
            SetRequest(sut.key("t2"), b"2"),
            DeleteRequest(sut.key("gone")),
        ],
        {},
    )
    t1, t2 = await _get(sut, "t1"), await _get(sut, "t2")
    assert t1 is not None and t1.data == b"1"
    assert t2 is not None and t2.data == b"2"
    assert await _get(sut, "gone") is None


async def test_transaction_with_stale_etag_applies_nothing(sut: StoreUnderTest) -> None:
    if Feature.TRANSACTIONAL not in _features(sut):
        pytest.skip(f"{sut.type} does not claim TRANSACTIONAL")
    await _set(sut, "guard", b"1")
    old = await _get(sut, "guard")
    await _set(sut, "guard", b"2")
    await _set(sut, "victim", b"keep")
    assert old is not None
    with pytest.raises(ETagMismatchError):
        await sut.store.multi(
            [
                SetRequest(sut.key("new"), b"n"),
                DeleteRequest(sut.key("victim")),
                SetRequest(sut.key("guard"), b"3", etag=old.etag),
            ],
            {},
        )
    assert await _get(sut, "new") is None
    victim = await _get(sut, "victim")
    assert victim is not None and victim.data == b"keep"
    guard = await _get(sut, "guard")
    assert guard is not None and guard.data == b"2"


# -- query ---------------------------------------------------------------------------------


async def _seed_orders(sut: StoreUnderTest) -> None:
    for i in range(1, 8):
        doc = {"order": {"total": i * 10}, "tier": "gold" if i % 2 else "silver", "id": i}
        await _set(sut, f"order-{i}", json.dumps(doc).encode())
    await _set(sut, "not-json", b"\x00\x01")


async def test_query_filters_sorts_and_pages(query_sut: StoreUnderTest) -> None:
    sut = query_sut
    await _seed_orders(sut)
    query = parse_query(
        {
            "filter": {
                "AND": [
                    {"GTE": {"order.total": 20}},
                    {"OR": [{"EQ": {"tier": "gold"}}, {"IN": {"id": [2, 4]}}]},
                ]
            },
            "sort": [{"key": "order.total", "order": "DESC"}],
            "page": {"limit": 3},
        }
    )
    prefix = sut.key("")
    first = await sut.store.query(QueryRequest(query, key_prefix=prefix))
    totals = [json.loads(r.data)["order"]["total"] for r in first.results]
    assert totals == [70, 50, 40]
    assert all(r.key.startswith(prefix) and r.etag for r in first.results)
    assert first.token
    rest = parse_query(
        {
            "filter": query_filter_doc(),
            "sort": [{"key": "order.total", "order": "DESC"}],
            "page": {"limit": 3, "token": first.token},
        }
    )
    second = await sut.store.query(QueryRequest(rest, key_prefix=prefix))
    assert [json.loads(r.data)["order"]["total"] for r in second.results] == [30, 20]
    assert not second.token


def query_filter_doc() -> dict[str, object]:
    return {
        "AND": [
            {"GTE": {"order.total": 20}},
            {"OR": [{"EQ": {"tier": "gold"}}, {"IN": {"id": [2, 4]}}]},
        ]
    }


async def test_query_only_sees_keys_under_prefix(query_sut: StoreUnderTest) -> None:
    sut = query_sut
    await _set(sut, "mine", b'{"v": 1}')
    await sut.store.set(SetRequest(f"{sut.prefix}-other||theirs", b'{"v": 1}'))
    res = await sut.store.query(
        QueryRequest(parse_query({"filter": {"EQ": {"v": 1}}}), key_prefix=sut.key(""))
    )
    assert [r.key for r in res.results] == [sut.key("mine")]


async def test_query_neq_and_lt_with_ascending_sort(query_sut: StoreUnderTest) -> None:
    sut = query_sut
    await _seed_orders(sut)
    q = parse_query(
        {
            "filter": {"AND": [{"NEQ": {"tier": "gold"}}, {"LT": {"order.total": 70}}]},
            "sort": [{"key": "id"}],
        }
    )
    res = await sut.store.query(QueryRequest(q, key_prefix=sut.key("")))
    assert [json.loads(r.data)["id"] for r in res.results] == [2, 4, 6]
