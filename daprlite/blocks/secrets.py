"""The secrets building block, shared by the HTTP and gRPC transports.

Finds the store, applies the Configuration's secret scopes (a denied key is a
403, and bulk reads silently leave denied keys out) and maps component
errors to the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping

from daprlite import errors
from daprlite.components.errors import ComponentError
from daprlite.components.secretstores.api import SecretStore
from daprlite.config.configuration import Configuration
from daprlite.runtime.registry import ComponentStore


class SecretsAPI:
    def __init__(self, components: ComponentStore, configuration: Configuration) -> None:
        self._components = components
        self.configuration = configuration

    def _store(self, name: str) -> SecretStore:
        if not self._components.of_category("secretstores"):
            raise errors.SECRET_STORES_NOT_CONFIGURED("secret store is not configured")
        live = self._components.get("secretstores", name)
        if live is None:
            raise errors.SECRET_STORE_NOT_FOUND(f"failed finding secret store with key {name}")
        store = live.instance
        assert isinstance(store, SecretStore)
        return store

    async def get(self, store_name: str, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        store = self._store(store_name)
        if not key:
            raise errors.BAD_REQUEST("key: the secret name must not be empty")
        if not self.configuration.secret_allowed(store_name, key):
            raise errors.SECRET_PERMISSION_DENIED(
                f"access denied by policy to get {key!r} from {store_name!r}"
            )
        try:
            return await store.get_secret(key, metadata)
        except ComponentError as exc:
            raise errors.SECRET_GET(
                f"failed getting secret with key {key} from secret store {store_name}: {exc}"
            ) from exc

    async def bulk_get(
        self, store_name: str, metadata: Mapping[str, str]
    ) -> dict[str, dict[str, str]]:
        store = self._store(store_name)
        try:
            everything = await store.bulk_get_secret(metadata)
        except ComponentError as exc:
            raise errors.SECRET_GET(
                f"failed getting secrets from secret store {store_name}: {exc}"
            ) from exc
        return {
            k: v for k, v in everything.items() if self.configuration.secret_allowed(store_name, k)
        }
