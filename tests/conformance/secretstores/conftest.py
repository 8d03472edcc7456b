"""Fixtures for the secret store conformance suite: one live store per component.

Every test in this folder runs once per secret store, each built through the
registry and seeded with the same secrets (:data:`SEEDED`): written to a JSON
file in the test's temporary folder for ``secretstores.local.file``, and set as
environment variables under a prefix unique to the test for
``secretstores.local.env`` (``monkeypatch`` removes them afterwards). The env
fixture also sets a decoy variable just outside that prefix, which the store
must never return.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from daprlite.components.secretstores.api import SecretStore

# Secret name -> the value as seeded: the file stores numbers and booleans as JSON
# literals, the environment as their JSON text. Every store must answer with EXPECTED.
SEEDED: dict[str, str | int | float | bool] = {
    "dbPassword": "s3cr3t p@ss=word",
    "api_key": "abc123",
    "unicode": "пароль ✓",
    "empty": "",
    "port": 6379,
    "ratio": 0.25,
    "enabled": True,
}
EXPECTED: dict[str, str] = {
    name: value if isinstance(value, str) else json.dumps(value) for name, value in SEEDED.items()
}

STORE_TYPES = ["secretstores.local.file", "secretstores.local.env"]


@dataclass
class StoreUnderTest:
    store: SecretStore
    type: str


def _seed(ctype: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Put :data:`SEEDED` where the store reads it; return the store's properties."""
    if ctype == "secretstores.local.file":
        path = tmp_path / "secrets.json"
        path.write_text(json.dumps(SEEDED, ensure_ascii=False), encoding="utf-8")
        return {"secretsFile": str(path)}
    if ctype == "secretstores.local.env":
        prefix = f"DLCONF_{uuid.uuid4().hex[:8].upper()}_"
        for name, value in EXPECTED.items():
            monkeypatch.setenv(prefix + name, value)
        # Shares all but the last character of the prefix: must not be returned.
        monkeypatch.setenv(prefix[:-1] + "X_decoy", "not a seeded secret")
        return {"prefix": prefix}
    raise AssertionError(f"no seeding for {ctype}")


@pytest.fixture(params=STORE_TYPES)
async def sut(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[StoreUnderTest]:
    ctype: str = request.param
    properties = _seed(ctype, tmp_path, monkeypatch)
    store = Registry().resolve(ctype)()
    await store.init(ComponentMetadata(name="conformance", type=ctype, properties=properties))
    try:
        yield StoreUnderTest(store, ctype)
    finally:
        await store.close()
