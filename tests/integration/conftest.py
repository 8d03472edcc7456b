"""Fixtures that start real sidecar processes next to real backends.

``store_sidecar`` is one ``daprlite run`` process per state store type (module
scope, to keep the suite fast), with its component named ``statestore`` as
``daprlite init`` names it. Tests isolate themselves with unique keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess
from tests.integration.invoke_system import InvokeSystem, start_system
from tests.services import POSTGRES_DSN, REDIS_HOST

STORE_TYPES = ["state.in-memory", "state.sqlite", "state.redis", "state.postgresql"]
QUERYABLE = {"state.in-memory", "state.sqlite", "state.postgresql"}


def store_metadata(store_type: str, workdir: Path, run: str) -> dict[str, str]:
    if store_type == "state.sqlite":
        return {"connectionString": str(workdir / "state.db")}
    if store_type == "state.redis":
        return {"redisHost": REDIS_HOST}
    if store_type == "state.postgresql":
        return {"connectionString": POSTGRES_DSN, "tableName": f"it_{run}"}
    return {}


def write_store(folder: Path, store_type: str, run: str, name: str = "statestore") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = store_metadata(store_type, folder, run)
    (folder / f"{name}.yaml").write_text(component_yaml(name, store_type, meta))
    return folder


def drop_pg_table(table: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="module", params=STORE_TYPES)
def store_sidecar(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    store_type: str = request.param
    run = uuid.uuid4().hex[:10]
    root = tmp_path_factory.mktemp(store_type.replace(".", "-"))
    resources = write_store(root / "resources", store_type, run)
    sidecar = SidecarProcess(
        [resources], app_id="itapp", home=root / "home", extra_args=["--max-body-size", "64Ki"]
    )
    sidecar.store_type = store_type  # type: ignore[attr-defined]
    try:
        yield sidecar.wait_ready()
    finally:
        sidecar.stop()
        if store_type == "state.postgresql":
            drop_pg_table(f"it_{run}")


@pytest.fixture
def key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def invoke_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InvokeSystem]:
    """The caller sidecar and the callee apps of the invocation tests (see invoke_system.py)."""
    system = start_system(tmp_path_factory.mktemp("invoke"))
    try:
        yield system
    finally:
        system.stop()
