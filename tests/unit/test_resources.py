"""Loading Dapr resource YAML and turning it into live components.

Every invalid manifest stops start-up with one message naming the file, the
resource and the field, unless the component sets ``ignoreErrors``.
"""

from __future__ import annotations

import asyncio
import sys
import textwrap
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from daprlite.components.errors import MissingDriverError
from daprlite.components.registry import BUILTIN, Registration, Registry, UnknownComponentError
from daprlite.config.resources import ResourceError, ResourceLoader
from daprlite.runtime.processor import ComponentLoadError, ComponentProcessor
from daprlite.runtime.registry import ComponentStore


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def component(name: str, ctype: str, extra: str = "") -> str:
    return f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata:
          name: {name}
        spec:
          type: {ctype}
          version: v1
        {extra}
        """


async def load(folder: Path, app_id: str = "app", registry: Registry | None = None):
    res = ResourceLoader(app_id).load([folder])
    store = ComponentStore()
    stack = AsyncExitStack()
    await ComponentProcessor(registry or Registry(), store, app_id).load_all(res.components, stack)
    return store, stack


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", "kind: Component\nmetadata: {name: x\n")
    with pytest.raises(ResourceError) as err:
        ResourceLoader("app").load([tmp_path])
    assert "broken.yaml" in str(err.value) and "line" in str(err.value)


def test_missing_spec_type_names_component_and_field(tmp_path: Path) -> None:
    write(
        tmp_path,
        "c.yaml",
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: orders}
        spec: {version: v1}
        """,
    )
    with pytest.raises(ResourceError) as err:
        ResourceLoader("app").load([tmp_path])
    msg = str(err.value)
    assert "c.yaml" in msg and "'orders'" in msg and "spec.type" in msg


async def test_unknown_type_suggests_close_types(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml", component("cache", "state.redsi"))
    with pytest.raises(ComponentLoadError) as err:
        await load(tmp_path)
    msg = str(err.value)
    assert "c.yaml" in msg and "'cache'" in msg and "spec.type" in msg
    assert "state.redis" in msg


async def test_missing_required_metadata_names_the_field(tmp_path: Path) -> None:
    write(tmp_path, "redis.yaml", component("cache", "state.redis"))
    with pytest.raises(ComponentLoadError) as err:
        await load(tmp_path)
    msg = str(err.value)
    assert "redis.yaml" in msg and "'cache'" in msg and "redisHost" in msg


async def test_bad_metadata_value_names_field_and_expectation(tmp_path: Path) -> None:
    extra = """\
  metadata:
          - name: connectionString
            value: x.db
          - name: timeout
            value: soon
"""
    write(tmp_path, "s.yaml", component("db", "state.sqlite", extra))
    with pytest.raises(ComponentLoadError) as err:
        await load(tmp_path)
    assert "timeout" in str(err.value) and "duration" in str(err.value)


async def test_ignore_errors_skips_a_broken_component(tmp_path: Path) -> None:
    broken = component("cache", "state.nope").replace(
        "version: v1", "version: v1\n          ignoreErrors: true"
    )
    write(tmp_path, "a.yaml", broken)
    write(tmp_path, "b.yaml", component("mem", "state.in-memory"))
    store, stack = await load(tmp_path)
    assert [c.name for c in store] == ["mem"]
    await stack.aclose()


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", component("dup", "state.in-memory"))
    write(tmp_path, "b.yaml", component("dup", "state.in-memory"))
    with pytest.raises(ResourceError) as err:
        ResourceLoader("app").load([tmp_path])
    assert "duplicate" in str(err.value) and "a.yaml" in str(err.value)


def test_multi_document_files_scopes_and_other_kinds(tmp_path: Path) -> None:
    write(
        tmp_path,
        "all.yml",
        """\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: mine}
        spec: {type: state.in-memory, version: v1}
        scopes: [app]
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {name: theirs}
        spec: {type: state.in-memory, version: v1}
        scopes: [other]
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Resiliency
        metadata: {name: res}
        spec: {policies: {}}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: ignored}
        """,
    )
    write(tmp_path, "notes.txt", "not yaml at all: [")
    res = ResourceLoader("app").load([tmp_path])
    assert [c.name for c in res.components] == ["mine"]
    assert [r.name for r in res.resiliencies] == ["res"]


async def test_env_ref_and_placeholders_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_PREFIX", "custom")
    extra = """\
  metadata:
          - name: keyPrefix
            envRef: STATE_PREFIX
          - name: note
            value: "{appID}-x"
"""
    write(tmp_path, "m.yaml", component("mem", "state.in-memory", extra))
    store, stack = await load(tmp_path, app_id="orders")
    mem = store.get("state", "mem")
    assert mem is not None
    assert mem.property("keyprefix") == "custom" and mem.property("note") == "orders-x"
    await stack.aclose()


async def test_secret_key_ref_without_secret_store_names_the_field(tmp_path: Path) -> None:
    extra = """\
  metadata:
          - name: redisPassword
            secretKeyRef: {name: redis, key: password}
"""
    write(tmp_path, "r.yaml", component("cache", "state.redis", extra))
    with pytest.raises(ComponentLoadError) as err:
        await load(tmp_path)
    assert "secretKeyRef" in str(err.value) and "no secret store" in str(err.value)


class _SlowStore:
    async def init(self, metadata: object) -> None:
        await asyncio.sleep(30)

    async def close(self) -> None:
        return None


async def test_init_timeout_is_enforced(tmp_path: Path) -> None:
    table = {**BUILTIN, ("state.slow", "v1"): Registration(f"{__name__}:_SlowStore")}
    slow = component("slow", "state.slow").replace(
        "version: v1", "version: v1\n          initTimeout: 100ms"
    )
    write(tmp_path, "s.yaml", slow)
    with pytest.raises(ComponentLoadError) as err:
        await load(tmp_path, registry=Registry(table))
    assert "initTimeout" in str(err.value)


def test_missing_driver_names_the_extra() -> None:
    table = {
        ("state.fancy", "v1"): Registration(
            "daprlite_no_such_driver.store:Store", "daprlite_no_such_driver", "fancy"
        )
    }
    with pytest.raises(MissingDriverError) as err:
        Registry(table).resolve("state.fancy", "v1")
    assert "pip install 'daprlite[fancy]'" in str(err.value)


def test_unknown_version_lists_known_versions() -> None:
    with pytest.raises(UnknownComponentError) as err:
        Registry().resolve("state.redis", "v9")
    assert "v1" in str(err.value)


def test_third_party_component_registers_through_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "thirdparty_store-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-store\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[daprlite.components]\nstate.thirdparty = tests.unit.test_resources:_SlowStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert Registry().resolve("state.thirdparty") is _SlowStore
    assert "state.thirdparty" in Registry().known_types()
    assert sys.path[0] == str(tmp_path)


async def test_env_ref_never_hands_out_sidecar_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-token")
    monkeypatch.setenv("APP_API_TOKEN", "app-token")
    extra = """\
  metadata:
          - name: a
            envRef: DAPR_API_TOKEN
          - name: b
            envRef: APP_API_TOKEN
"""
    write(tmp_path, "m.yaml", component("mem", "state.in-memory", extra))
    store, stack = await load(tmp_path)
    mem = store.get("state", "mem")
    assert mem is not None and mem.property("a") == "" and mem.property("b") == ""
    await stack.aclose()
