"""Behaviour specific to ``state.sqlite``, beyond the shared conformance suite.

The file is meant to be shared by every sidecar on a laptop, so these tests
open several stores (and several processes) on one file; they also cover
durability, settings validation, the event loop staying free, expiry cleanup,
and that the SQL query translation agrees with the reference evaluator.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.state.api import Concurrency, GetRequest, QueryRequest, SetRequest
from daprlite.components.state.inmemory import InMemoryStateStore
from daprlite.components.state.query import parse_query
from daprlite.components.state.sqlite import SQLiteStateStore

REPO = Path(__file__).resolve().parents[2]


async def open_store(path: Path | str, **properties: str) -> SQLiteStateStore:
    store = SQLiteStateStore()
    props = {"connectionString": str(path), **properties}
    await store.init(ComponentMetadata(name="unit", type="state.sqlite", properties=props))
    return store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStateStore]:
    s = await open_store(tmp_path / "state.db")
    try:
        yield s
    finally:
        await s.close()


def _raw_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the file with a separate plain connection (run it in a thread)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- several sidecars on one file -------------------------------------------------------


async def test_two_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    a = await open_store(tmp_path / "shared.db")
    b = await open_store(tmp_path / "shared.db")
    try:
        await a.set(SetRequest("app||k", b"from-a"))
        got = await b.get(GetRequest("app||k"))
        assert got is not None and got.data == b"from-a"
        await b.set(SetRequest("app||k", b"from-b", etag=got.etag))
        again = await a.get(GetRequest("app||k"))
        assert again is not None and again.data == b"from-b" and again.etag != got.etag
    finally:
        await a.close()
        await b.close()


async def test_etag_writers_on_two_stores_sharing_a_file_have_exactly_one_winner(
    tmp_path: Path,
) -> None:
    stores = [await open_store(tmp_path / "shared.db") for _ in range(2)]
    try:
        await stores[0].set(SetRequest("race", b"0"))
        base = await stores[1].get(GetRequest("race"))
        assert base is not None

        async def attempt(i: int) -> bool:
            try:
                await stores[i % 2].set(SetRequest("race", str(i).encode(), etag=base.etag))
                return True
            except ETagMismatchError:
                return False

        results = await asyncio.gather(*(attempt(i) for i in range(16)))
        assert results.count(True) == 1
        final = await stores[0].get(GetRequest("race"))
        assert final is not None and final.data == str(results.index(True)).encode()
    finally:
        for s in stores:
            await s.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from daprlite.components.errors import ETagMismatchError
    from daprlite.components.metadata import ComponentMetadata
    from daprlite.components.state.api import SetRequest
    from daprlite.components.state.sqlite import SQLiteStateStore

    async def main(path, etag, tag):
        store = SQLiteStateStore()
        meta = ComponentMetadata("child", "state.sqlite", properties={"connectionString": path})
        await store.init(meta)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

        async def attempt(i):
            try:
                await store.set(SetRequest("race", f"{tag}-{i}".encode(), etag=etag))
                return f"{tag}-{i}"
            except ETagMismatchError:
                return None

        wins = [w for w in await asyncio.gather(*(attempt(i) for i in range(4))) if w]
        await store.close()
        print(json.dumps(wins), flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_etag_writers_in_separate_processes_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    parent = await open_store(path)
    try:
        await parent.set(SetRequest("race", b"0"))
        base = await parent.get(GetRequest("race"))
        assert base is not None
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                str(path),
                base.etag or "",
                f"child{n}",
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for n in range(2)
        ]
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"ready"
        for child in children:  # release both at once, then race them against the parent
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()

        async def attempt(i: int) -> str | None:
            try:
                await parent.set(SetRequest("race", f"parent-{i}".encode(), etag=base.etag))
                return f"parent-{i}"
            except ETagMismatchError:
                return None

        mine = [w for w in await asyncio.gather(*(attempt(i) for i in range(4))) if w]
        theirs: list[str] = []
        for child in children:
            out, _ = await child.communicate()
            assert child.returncode == 0
            theirs += json.loads(out.decode().strip().splitlines()[-1])
        winners = mine + theirs
        assert len(winners) == 1
        final = await parent.get(GetRequest("race"))
        assert final is not None and final.data == winners[0].encode()
    finally:
        await parent.close()


# -- durability and lifecycle --------------------------------------------------------------


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    first = await open_store(path)
    await first.set(SetRequest("app||doc", b'{"a": 1}'))
    await first.set(SetRequest("app||bin", bytes(range(256)), ttl_seconds=3600))
    before = await first.get(GetRequest("app||bin"))
    await first.close()

    reopened = await open_store(path)
    try:
        doc = await reopened.get(GetRequest("app||doc"))
        binary = await reopened.get(GetRequest("app||bin"))
        assert doc is not None and doc.data == b'{"a": 1}'
        assert binary is not None and before is not None
        assert binary.data == bytes(range(256))
        assert binary.etag == before.etag
        assert binary.metadata["ttlExpireTime"] == before.metadata["ttlExpireTime"]
    finally:
        await reopened.close()


async def test_calls_after_close_raise_component_error(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "state.db")
    await s.close()
    with pytest.raises(ComponentError, match="closed"):
        await s.get(GetRequest("k"))


async def test_missing_parent_directories_are_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    s = await open_store(path)
    try:
        await s.set(SetRequest("k", b"v"))
    finally:
        await s.close()
    assert path.is_file()


async def test_file_uses_wal_unless_disabled(tmp_path: Path) -> None:
    for name, props, expected in [
        ("wal.db", {}, "wal"),
        ("plain.db", {"disableWAL": "true"}, "delete"),
    ]:
        s = await open_store(tmp_path / name, **props)
        await s.close()
        rows = await asyncio.to_thread(_raw_rows, tmp_path / name, "PRAGMA journal_mode")
        assert rows == [(expected,)], name


async def test_url_alias_and_in_memory_database_work(tmp_path: Path) -> None:
    s = SQLiteStateStore()
    await s.init(ComponentMetadata("unit", "state.sqlite", properties={"URL": ":memory:"}))
    try:
        await s.set(SetRequest("k", b"v"))
        got = await s.get(GetRequest("k"))
        assert got is not None and got.data == b"v"
    finally:
        await s.close()


# -- settings --------------------------------------------------------------------------------


async def test_timeout_below_one_second_is_refused_naming_timeout(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as info:
        await open_store(tmp_path / "state.db", timeout="500ms")
    assert info.value.field == "timeout"


async def test_missing_connection_string_is_refused() -> None:
    with pytest.raises(MetadataError) as info:
        await SQLiteStateStore().init(ComponentMetadata("unit", "state.sqlite", properties={}))
    assert info.value.field == "connectionString"


@pytest.mark.parametrize("name", ["state; DROP TABLE x", 'st"ate', "sqlite_master", "1state", ""])
async def test_unsafe_table_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MetadataError) as info:
        await open_store(tmp_path / "state.db", tableName=name)
    assert info.value.field == "tableName"


async def test_existing_table_with_another_layout_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    await asyncio.to_thread(
        _raw_rows, path, "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT)"
    )
    with pytest.raises(ComponentError, match=r"'state'.*etag"):
        await open_store(path)


# -- the event loop stays free -----------------------------------------------------------------


async def test_store_calls_leave_the_event_loop_free(store: SQLiteStateStore) -> None:
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal ticks
        while running:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    for i in range(200):
        await store.set(SetRequest(f"k{i}", b'{"v": 1}'))
    after_writes = ticks
    for i in range(200):
        assert await store.get(GetRequest(f"k{i}")) is not None
    after_reads = ticks
    running = False
    await task
    # A store that ran sqlite3 on the loop would never yield: the ticker would not move.
    assert after_writes - start >= 200
    assert after_reads - after_writes >= 200


# -- expiry ---------------------------------------------------------------------------------


async def test_cleanup_deletes_expired_rows_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    s = await open_store(path, cleanupInterval="200ms")
    try:
        await s.set(SetRequest("short", b"1", ttl_seconds=1))
        await s.set(SetRequest("kept", b"1"))
        for _ in range(50):
            rows = await asyncio.to_thread(_raw_rows, path, "SELECT key FROM state ORDER BY key")
            if rows == [("kept",)]:
                break
            await asyncio.sleep(0.1)
        assert rows == [("kept",)]
    finally:
        await s.close()


async def test_first_write_may_reuse_an_expired_key(store: SQLiteStateStore) -> None:
    await store.set(SetRequest("k", b"old", ttl_seconds=1))
    await asyncio.sleep(1.2)
    await store.set(SetRequest("k", b"new", concurrency=Concurrency.FIRST_WRITE))
    got = await store.get(GetRequest("k"))
    assert got is not None and got.data == b"new" and "ttlExpireTime" not in got.metadata


# -- bulk --------------------------------------------------------------------------------------


async def test_bulk_get_beyond_one_chunk_keeps_order_and_duplicates(
    store: SQLiteStateStore,
) -> None:
    for i in range(0, 1200, 2):
        await store.set(SetRequest(f"k{i}", str(i).encode()))
    keys = [f"k{i}" for i in range(1200)] + ["k0"]
    items = await store.bulk_get(keys, {})
    assert [i.key for i in items] == keys
    assert [i.data for i in items] == [
        str(i).encode() if i % 2 == 0 else None for i in range(1200)
    ] + [b"0"]


# -- query -------------------------------------------------------------------------------------

_DOCS: dict[str, bytes] = {
    "a": json.dumps(
        {
            "n": 1,
            "s": "apple",
            "b": True,
            "z": None,
            "arr": [1, 2],
            "o": {"x": 1},
            "nested": {"v": 10},
        }
    ).encode(),
    "b": json.dumps({"n": 2.5, "s": "Banana", "b": False, "nested": {"v": "10"}}).encode(),
    "c": json.dumps({"n": -3, "s": "cherry", "arr": [1, 2], "o": {"x": 1}}).encode(),
    "d": json.dumps({"n": 1.0, "s": "ä-umlaut", "b": 1}).encode(),
    "e": json.dumps({"n": "1", "s": 5}).encode(),
    "f": json.dumps({"s": "apple", "n": None}).encode(),
    "g": json.dumps({"n": 10**20, "s": "zebra"}).encode(),
    "h": b"[1, 2, 3]",
    "i": b'"just a string"',
    "j": json.dumps({"n": True, "s": ""}).encode(),
    "k": json.dumps({"nested": {"v": 10, "w": [1]}}).encode(),
    "l": json.dumps({"café": 3, "n": 7}).encode(),  # stored as {"caf\u00e9": 3, ...}
    "m": b'{"n": 1, "n": 99}',  # duplicate key: the last one counts, as in Python
    "x": b"\x00\x01 not json",
}

_FILTERS: list[dict[str, object]] = [
    {"EQ": {"n": 1}},
    {"EQ": {"n": True}},
    {"EQ": {"n": "1"}},
    {"NEQ": {"n": 1}},
    {"GT": {"n": 1}},
    {"GTE": {"n": 1}},
    {"LT": {"n": 2}},
    {"LTE": {"n": 1.0}},
    {"GT": {"n": 10**19}},
    {"GT": {"s": "b"}},
    {"LT": {"s": "b"}},
    {"GTE": {"s": "apple"}},
    {"EQ": {"s": "apple"}},
    {"EQ": {"s": "ä-umlaut"}},
    {"IN": {"s": ["apple", "zebra", 5]}},
    {"IN": {"n": [1, "1"]}},
    {"IN": {"n": []}},
    {"EQ": {"z": None}},
    {"NEQ": {"z": None}},
    {"GT": {"z": None}},
    {"EQ": {"arr": [1, 2]}},
    {"EQ": {"o": {"x": 1}}},
    {"NEQ": {"o": {"x": 1}}},
    {"GT": {"o": {"x": 0}}},
    {"EQ": {"nested.v": 10}},
    {"EQ": {"nested.v": "10"}},
    {"GT": {"nested.v": 5}},
    {"EQ": {"nested.w": [1]}},
    {"EQ": {"missing": 1}},
    {"NEQ": {"missing.deeper": 1}},
    {"EQ": {"café": 3}},
    {"EQ": {"b": True}},
    {"EQ": {"b": 1}},
    {"GT": {"b": 0}},
    {"AND": [{"GTE": {"n": 1}}, {"OR": [{"EQ": {"s": "apple"}}, {"LT": {"n": 3}}]}]},
    {"OR": [{"EQ": {"s": 5}}, {"AND": [{"NEQ": {"s": "apple"}}, {"GT": {"n": 0}}]}]},
]

_SORTS: list[list[dict[str, str]]] = [
    [{"key": "n"}],
    [{"key": "n", "order": "DESC"}],
    [{"key": "s"}],
    [{"key": "s", "order": "DESC"}],
    [{"key": "b"}],
    [{"key": "nested.v"}, {"key": "n", "order": "DESC"}],
]


@pytest.fixture
async def both_stores(
    store: SQLiteStateStore,
) -> AsyncIterator[tuple[SQLiteStateStore, InMemoryStateStore]]:
    reference = InMemoryStateStore()
    await reference.init(ComponentMetadata("ref", "state.in-memory"))
    for name, value in _DOCS.items():
        for s in (store, reference):
            await s.set(SetRequest(f"app||{name}", value))
    await store.set(SetRequest("other||a", _DOCS["a"]))  # outside the prefix
    yield store, reference
    await reference.close()


async def _query_keys(s: object, doc: dict[str, object]) -> tuple[list[str], str]:
    res = await s.query(QueryRequest(parse_query(doc), key_prefix="app||"))  # type: ignore[attr-defined]
    return [r.key for r in res.results], res.token


@pytest.mark.parametrize("flt", _FILTERS, ids=lambda f: json.dumps(f, ensure_ascii=False))
async def test_query_filter_agrees_with_reference_evaluator(
    both_stores: tuple[SQLiteStateStore, InMemoryStateStore], flt: dict[str, object]
) -> None:
    sqlite_store, reference = both_stores
    doc = {"filter": flt}
    assert await _query_keys(sqlite_store, doc) == await _query_keys(reference, doc)


@pytest.mark.parametrize("sort", _SORTS, ids=lambda s: json.dumps(s))
async def test_query_sort_and_pages_agree_with_reference(
    both_stores: tuple[SQLiteStateStore, InMemoryStateStore], sort: list[dict[str, str]]
) -> None:
    sqlite_store, reference = both_stores
    for s in (sqlite_store, reference):
        pages, token = [], ""
        while True:
            keys, token = await _query_keys(s, {"sort": sort, "page": {"limit": 4, "token": token}})
            pages.append(keys)
            if not token:
                break
        if s is sqlite_store:
            got = pages
        else:
            want = pages
    assert got == want
    assert sum(len(p) for p in got) == 13  # every JSON document under the prefix, once


async def test_query_prefix_treats_like_wildcards_literally(store: SQLiteStateStore) -> None:
    for key in ("a_b||x", "axb||y", "a%b||z", "A_B||w"):
        await store.set(SetRequest(key, b'{"v": 1}'))
    for prefix, expected in [("a_b||", ["a_b||x"]), ("a%b||", ["a%b||z"])]:
        res = await store.query(QueryRequest(parse_query({}), key_prefix=prefix))
        assert [r.key for r in res.results] == expected


async def test_query_key_sqlite_cannot_address_is_an_error(store: SQLiteStateStore) -> None:
    await store.set(SetRequest("k", b'{"a\\"b": 1}'))
    with pytest.raises(ComponentError, match="cannot address"):
        await store.query(QueryRequest(parse_query({"filter": {"EQ": {'a"b': 1}}})))
