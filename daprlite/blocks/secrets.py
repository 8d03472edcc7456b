"""The secrets building block, shared by the HTTP and gRPC transports.

Finds the store, applies the Configuration's secret scopes (a denied key is a
403, and bulk reads silently leave denied keys out), calls the store under its
resiliency policy (``components.<name>.outbound``, see ``blocks/_resilient.py``)
and maps component errors to the catalogue. Bad request metadata and
unsupported capabilities are not retried. A missing secret is retried, as in
Dapr: the store contract reports it as an ordinary ``ComponentError``.
"""

from __future__ import annotations

from collections.abc import Mapping

from daprlite import errors
from daprlite.blocks._resilient import CALL_FAILURES, call_component, failure_reason
from daprlite.components.errors import ComponentError, MetadataError, NotSupportedError
from daprlite.components.secretstores.api import SecretStore
from daprlite.config.configuration import Configuration
from daprlite.resiliency import Resiliency
from daprlite.runtime.registry import ComponentStore


def _refused(exc: ComponentError) -> bool:
    return isinstance(exc, MetadataError | NotSupportedError)


class SecretsAPI:
    def __init__(
        self,
        components: ComponentStore,
        configuration: Configuration,
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self.configuration = configuration
        self.resiliency = resiliency or Resiliency.build(())

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
        policy = self.resiliency.component_outbound(store_name, "secretstore")
        try:
            return await call_component(policy, lambda: store.get_secret(key, metadata), _refused)
        except CALL_FAILURES as exc:
            raise errors.SECRET_GET(
                f"failed getting secret with key {key} from secret store {store_name}: "
                f"{failure_reason(exc)}"
            ) from exc

    async def bulk_get(
        self, store_name: str, metadata: Mapping[str, str]
    ) -> dict[str, dict[str, str]]:
        store = self._store(store_name)
        policy = self.resiliency.component_outbound(store_name, "secretstore")
        try:
            everything = await call_component(
                policy, lambda: store.bulk_get_secret(metadata), _refused
            )
        except CALL_FAILURES as exc:
            raise errors.SECRET_GET(
                f"failed getting secrets from secret store {store_name}: {failure_reason(exc)}"
            ) from exc
        return {
            k: v for k, v in everything.items() if self.configuration.secret_allowed(store_name, k)
        }
