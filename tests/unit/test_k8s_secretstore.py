"""``secretstores.kubernetes`` against the stand-in API server (tests/k8sapi.py).

The store is built through the registry, configured by a kubeconfig that points
at the stand-in (HTTPS with its own CA, a bearer token), and reads real
``Secret`` objects: values base64-decoded, the namespace chosen per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry
from daprlite.components.secretstores.api import SecretStore
from daprlite.components.secretstores.kubernetes import KubernetesSecretStore
from tests.k8sapi import K8sAPI, running

NS = "team-a"


@pytest.fixture(scope="module")
def api() -> Iterator[K8sAPI]:
    with running() as server:
        server.put_secret(NS, "db", {"username": "admin", "password": "s3cr3t p@ss=word"})
        server.put_secret(NS, "unicode", {"value": "пароль ✓", "empty": ""})
        server.put_secret(NS, "binary", {"blob": b"\xff\xfeok"})
        server.put_secret("team-b", "other", {"token": "from-b"})
        server.put_secret("locked", "hidden", {"k": "v"})
        server.forbidden_namespaces.add("locked")
        yield server


async def _store(
    api: K8sAPI, tmp_path: Path, token: str = "", **props: str
) -> KubernetesSecretStore:
    kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig", NS, token)
    store = Registry().resolve("secretstores.kubernetes")()
    assert isinstance(store, KubernetesSecretStore)
    await store.init(
        ComponentMetadata(
            name="kubernetes",
            type="secretstores.kubernetes",
            properties={"kubeconfigPath": str(kubeconfig), **props},
            namespace=NS,
        )
    )
    return store


@pytest.fixture
async def store(api: K8sAPI, tmp_path: Path) -> AsyncIterator[KubernetesSecretStore]:
    s = await _store(api, tmp_path)
    try:
        yield s
    finally:
        await s.close()


async def test_store_implements_the_contract_and_claims_multiple_values(
    store: KubernetesSecretStore,
) -> None:
    assert isinstance(store, SecretStore)
    assert store.features() == frozenset({"MULTIPLE_KEY_VALUES_PER_SECRET"})


async def test_get_returns_every_key_of_the_secret_base64_decoded(
    store: KubernetesSecretStore, api: K8sAPI
) -> None:
    assert await store.get_secret("db", {}) == {
        "username": "admin",
        "password": "s3cr3t p@ss=word",
    }
    assert await store.get_secret("unicode", {}) == {"value": "пароль ✓", "empty": ""}
    assert f"GET /api/v1/namespaces/{NS}/secrets/db" in api.requests


async def test_bytes_that_are_not_utf8_are_replaced_not_fatal(
    store: KubernetesSecretStore,
) -> None:
    assert await store.get_secret("binary", {}) == {"blob": "\ufffd\ufffdok"}


async def test_missing_secret_raises_not_found(store: KubernetesSecretStore) -> None:
    with pytest.raises(ComponentError, match=r"^secret no-such-secret not found$"):
        await store.get_secret("no-such-secret", {})


@pytest.mark.parametrize("name", ["..", "a/b", "DB", "db/../unicode", "%2e%2e", "", "x" * 254])
async def test_names_that_cannot_be_secrets_are_not_found_without_a_request(
    store: KubernetesSecretStore, api: K8sAPI, name: str
) -> None:
    before = len(api.requests)
    with pytest.raises(ComponentError, match="not found"):
        await store.get_secret(name, {})
    assert len(api.requests) == before


async def test_request_metadata_namespace_reads_another_namespace(
    store: KubernetesSecretStore,
) -> None:
    assert await store.get_secret("other", {"namespace": "team-b"}) == {"token": "from-b"}
    with pytest.raises(ComponentError, match="not found"):
        await store.get_secret("other", {})  # not in the pod's namespace


async def test_default_namespace_setting_replaces_the_pods(api: K8sAPI, tmp_path: Path) -> None:
    store = await _store(api, tmp_path, defaultNamespace="team-b")
    try:
        assert await store.get_secret("other", {}) == {"token": "from-b"}
        assert await store.get_secret("db", {"namespace": NS}) == {
            "username": "admin",
            "password": "s3cr3t p@ss=word",
        }
    finally:
        await store.close()


async def test_invalid_namespace_is_refused_naming_the_field(store: KubernetesSecretStore) -> None:
    with pytest.raises(MetadataError, match="'namespace'") as info:
        await store.get_secret("db", {"namespace": "../kube-system"})
    assert info.value.field == "namespace"


async def test_invalid_default_namespace_fails_init_naming_the_key(
    api: K8sAPI, tmp_path: Path
) -> None:
    with pytest.raises(MetadataError) as info:
        await _store(api, tmp_path, defaultNamespace="Not_A_Namespace")
    assert info.value.field == "defaultNamespace"


async def test_forbidden_namespace_reports_the_api_servers_reason(
    store: KubernetesSecretStore,
) -> None:
    with pytest.raises(ComponentError, match=r"HTTP 403: secrets is forbidden") as info:
        await store.get_secret("hidden", {"namespace": "locked"})
    assert "not found" not in str(info.value)


async def test_bulk_returns_every_secret_of_the_namespace(store: KubernetesSecretStore) -> None:
    bulk = await store.bulk_get_secret({})
    assert bulk == {
        "binary": {"blob": "\ufffd\ufffdok"},
        "db": {"username": "admin", "password": "s3cr3t p@ss=word"},
        "unicode": {"value": "пароль ✓", "empty": ""},
    }
    assert await store.bulk_get_secret({"namespace": "team-b"}) == {"other": {"token": "from-b"}}


async def test_a_changed_secret_is_read_fresh(store: KubernetesSecretStore, api: K8sAPI) -> None:
    api.put_secret(NS, "rotating", {"key": "one"})
    assert await store.get_secret("rotating", {}) == {"key": "one"}
    api.put_secret(NS, "rotating", {"key": "two"})
    assert await store.get_secret("rotating", {}) == {"key": "two"}
    api.delete("secrets", NS, "rotating")
    with pytest.raises(ComponentError, match="not found"):
        await store.get_secret("rotating", {})


async def test_wrong_token_is_an_error_that_does_not_show_the_token(
    api: K8sAPI, tmp_path: Path
) -> None:
    store = await _store(api, tmp_path, token="wrong-token-value")
    try:
        with pytest.raises(ComponentError, match="HTTP 401") as info:
            await store.get_secret("db", {})
        assert "wrong-token-value" not in str(info.value)
        assert api.token not in str(info.value)
    finally:
        await store.close()


async def test_missing_kubeconfig_file_fails_init_naming_it(tmp_path: Path) -> None:
    store = KubernetesSecretStore()
    missing = tmp_path / "nope" / "kubeconfig"
    with pytest.raises(ComponentError, match=r"kubeconfig file .*nope/kubeconfig.* does not exist"):
        await store.init(
            ComponentMetadata(
                name="k",
                type="secretstores.kubernetes",
                properties={"kubeconfigPath": str(missing)},
            )
        )


async def test_outside_a_pod_without_kubeconfig_init_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    store = KubernetesSecretStore()
    with pytest.raises(ComponentError, match="KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT"):
        await store.init(ComponentMetadata(name="k", type="secretstores.kubernetes"))


async def test_close_is_idempotent_and_a_closed_store_refuses_reads(
    api: K8sAPI, tmp_path: Path
) -> None:
    store = await _store(api, tmp_path)
    await store.close()
    await store.close()
    with pytest.raises(ComponentError, match="closed"):
        await store.get_secret("db", {})
