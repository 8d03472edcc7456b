"""Fixtures for the state conformance suite: one live store per backend.

Every test in this folder runs once per state component, against its real
backend (Redis and PostgreSQL on their standard local ports, brought up by
``scripts/services.sh``). Each store instance gets its own namespace (a fresh
file, table or key prefix) so runs never see each other's data.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from tests.services import POSTGRES_DSN, REDIS_HOST


@dataclass
class StoreUnderTest:
    store: object
    type: str
    prefix: str  # every key a test writes starts with this, to isolate runs

    def key(self, name: str) -> str:
        return f"{self.prefix}||{name}"


def _properties(ctype: str, tmp_path: Path, run: str) -> dict[str, str]:
    if ctype == "state.sqlite":
        return {"connectionString": str(tmp_path / "state.db")}
    if ctype == "state.redis":
        return {"redisHost": REDIS_HOST}
    if ctype == "state.postgresql":
        return {"connectionString": POSTGRES_DSN, "tableName": f"conformance_{run}"}
    return {}


STORE_TYPES = ["state.in-memory", "state.sqlite", "state.redis", "state.postgresql"]
# Stores that claim QUERY_API; test_claimed_features_match_implemented_protocols and
# test_query_support_matches_the_queryable_list keep this list honest.
QUERYABLE_TYPES = ["state.in-memory", "state.sqlite", "state.postgresql"]


@pytest.fixture(params=STORE_TYPES)
async def sut(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    async with _store(request.param, tmp_path) as s:
        yield s


@pytest.fixture(params=QUERYABLE_TYPES)
async def query_sut(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreUnderTest]:
    async with _store(request.param, tmp_path) as s:
        yield s


@asynccontextmanager
async def _store(ctype: str, tmp_path: Path) -> AsyncIterator[StoreUnderTest]:
    run = uuid.uuid4().hex[:10]
    cls = Registry().resolve(ctype)
    store = cls()
    meta = ComponentMetadata(
        name="conformance", type=ctype, properties=_properties(ctype, tmp_path, run), app_id="t"
    )
    await store.init(meta)
    try:
        yield StoreUnderTest(store, ctype, f"conf-{run}")
    finally:
        await store.close()
        if ctype == "state.redis":
            import redis.asyncio as aioredis

            client = aioredis.from_url(f"redis://{REDIS_HOST}")
            try:
                async for k in client.scan_iter(match=f"conf-{run}*"):
                    await client.delete(k)
            finally:
                await client.aclose()
        if ctype == "state.postgresql":
            import asyncpg

            conn = await asyncpg.connect(POSTGRES_DSN)
            try:
                await conn.execute(f'DROP TABLE IF EXISTS "conformance_{run}"')
            finally:
                await conn.close()
