"""Key prefixes: who shares state with whom when sidecars share one store.

Two sidecars (different app ids) run on the same SQLite file, as two
``daprlite run`` processes on one laptop would. Dapr's ``keyPrefix`` metadata
decides whether they see each other's keys.
"""

from __future__ import annotations

import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from daprlite.testing import component_yaml, run_sidecar


async def _pair(tmp_path: Path, prefix: str | None) -> tuple[AsyncExitStack, str, str, Path]:
    db = tmp_path / "shared.db"
    meta = {"connectionString": str(db)}
    if prefix is not None:
        meta["keyPrefix"] = prefix
    res = tmp_path / "res"
    res.mkdir()
    (res / "statestore.yaml").write_text(component_yaml("statestore", "state.sqlite", meta))
    stack = AsyncExitStack()
    a = await stack.enter_async_context(run_sidecar([res], app_id="orders"))
    b = await stack.enter_async_context(run_sidecar([res], app_id="billing"))
    assert a.ports and b.ports
    url = "http://127.0.0.1:{}/v1.0/state/statestore"
    return stack, url.format(a.ports.http), url.format(b.ports.http), db


def stored_keys(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(row[0] for row in conn.execute("SELECT key FROM state"))


@pytest.mark.parametrize(
    ("prefix", "stored", "shared"),
    [
        (None, "orders||k", False),
        ("appid", "orders||k", False),
        ("name", "statestore||k", True),
        ("none", "k", True),
        ("team-a", "team-a||k", True),
    ],
)
async def test_key_prefix_decides_what_other_apps_see(
    tmp_path: Path, prefix: str | None, stored: str, shared: bool
) -> None:
    stack, a, b, db = await _pair(tmp_path, prefix)
    async with stack, aiohttp.ClientSession() as s:
        async with s.post(a, json=[{"key": "k", "value": "from-orders"}]) as r:
            assert r.status == 204
        async with s.get(f"{a}/k") as r:
            assert r.status == 200 and await r.json() == "from-orders"
        async with s.get(f"{b}/k") as r:
            assert (r.status == 200) is shared
        assert stored_keys(db) == [stored]


async def test_prefix_containing_separator_is_refused(tmp_path: Path) -> None:
    stack, a, _, _ = await _pair(tmp_path, "bad||prefix")
    async with stack, aiohttp.ClientSession() as s, s.get(f"{a}/k") as r:
        assert r.status == 400
        assert (await r.json())["errorCode"] == "ERR_MALFORMED_REQUEST"
