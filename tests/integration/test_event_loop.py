"""Nothing blocks the sidecar's event loop (design decision D2).

A real sidecar process runs with ``DAPRLITE_SLOW_CALLBACK_MS=50``, which puts
its loop in debug mode and logs every callback that holds the loop longer
than 50 ms. Any such line while state traffic runs fails the test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.conftest import STORE_TYPES, drop_pg_table, write_store
from tests.integration.harness import SidecarProcess


@pytest.fixture(params=STORE_TYPES)
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SidecarProcess]:
    run = uuid.uuid4().hex[:10]
    resources = write_store(tmp_path / "res", request.param, run)
    sc = SidecarProcess(
        [resources], "loop", tmp_path / "home", env={"DAPRLITE_SLOW_CALLBACK_MS": "50"}
    )
    try:
        yield sc.wait_ready()
    finally:
        sc.stop()
        if request.param == "state.postgresql":
            drop_pg_table(f"it_{run}")


async def test_state_traffic_never_blocks_the_loop_over_50ms(watched: SidecarProcess) -> None:
    base = f"{watched.http}/v1.0/state/statestore"
    async with aiohttp.ClientSession() as s:
        for i in range(100):
            item = [{"key": f"k{i}", "value": {"i": i, "pad": "x" * 2000}}]
            async with s.post(base, json=item) as r:
                assert r.status == 204
        async with s.post(f"{base}/bulk", json={"keys": [f"k{i}" for i in range(100)]}) as r:
            assert len(await r.json()) == 100
        ops = [{"operation": "upsert", "request": {"key": f"t{i}", "value": i}} for i in range(50)]
        async with s.post(f"{base}/transaction", json={"operations": ops}) as r:
            assert r.status == 204
        responses = await asyncio.gather(*(s.get(f"{base}/k{i}") for i in range(100)))
        for resp in responses:
            assert resp.status == 200
            resp.release()
    watched.stop()
    slow = [line for line in watched.lines if line.startswith("Executing") and "took" in line]
    assert slow == []
