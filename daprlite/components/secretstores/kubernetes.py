"""``secretstores.kubernetes``: Kubernetes Secrets, read through the API server.

The default secret store on Kubernetes: ``--mode kubernetes`` adds one named
``kubernetes`` when no secret store of that name is declared, so that
``secretKeyRef`` entries without ``auth.secretStore`` resolve against the pod's
namespace (start-up step 3). The secrets block calls the same
:class:`SecretStore` contract. A secret's values are its ``data`` entries,
base64-decoded; the namespace is the request's ``namespace`` metadata, else
``defaultNamespace``, else the pod's (``$NAMESPACE``). The client authenticates
as the pod's service account (or with ``kubeconfigPath`` / ``$KUBECONFIG``), so
what it may read is what RBAC grants that account.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting
from daprlite.kubernetes.client import (
    KubernetesConfigError,
    api_client,
    api_error_text,
    pod_namespace,
)

_log = logging.getLogger("daprlite.component.secretstores")

# Dapr's feature flag: one Secret holds several key/value pairs.
MULTIPLE_KEY_VALUES_PER_SECRET = "MULTIPLE_KEY_VALUES_PER_SECRET"
# Object names are DNS-1123 subdomains, namespaces DNS-1123 labels. Anything else cannot
# exist, and is refused before it becomes a URL path ("..", "a/b", "%2F").
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_REQUEST_TIMEOUT = 15.0  # seconds for one API call; resiliency policies may retry it


@dataclass(frozen=True, slots=True)
class KubernetesSecretsSettings:
    """Component metadata of ``secretstores.kubernetes``, with Dapr's (case-insensitive) names."""

    defaultNamespace: str = setting(
        "",
        doc="Namespace read when a request names none; empty means the pod's ($NAMESPACE).",
    )
    kubeconfigPath: str = setting(
        "",
        doc="A kubeconfig file to use instead of $KUBECONFIG or the pod's service account.",
    )

    def __post_init__(self) -> None:
        if self.defaultNamespace and not _NAMESPACE.match(self.defaultNamespace):
            raise MetadataError(
                "defaultNamespace",
                f"{self.defaultNamespace!r} is not a namespace name (lower-case letters, digits "
                "and '-', at most 63)",
            )


def _decode_data(name: str, data: Mapping[str, str] | None) -> dict[str, str]:
    """A Secret's ``data`` (base64 values) as text; bytes that are not UTF-8 become U+FFFD."""
    out: dict[str, str] = {}
    for key, encoded in (data or {}).items():
        try:
            raw = base64.b64decode(encoded or "", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ComponentError(f"secret {name}: key {key!r} is not valid base64") from exc
        out[key] = raw.decode("utf-8", errors="replace")
    return out


class KubernetesSecretStore:
    """Secrets of the pod's namespace (or a requested one), one API call per read."""

    def __init__(self) -> None:
        self.settings = KubernetesSecretsSettings()
        self._name = ""
        self._namespace = ""
        self._client: ApiClient | None = None
        self._core: CoreV1Api | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(KubernetesSecretsSettings, metadata.properties)
        self._name = metadata.name
        self._namespace = self.settings.defaultNamespace or pod_namespace(metadata.namespace)
        try:
            self._client = await api_client(self.settings.kubeconfigPath)
        except KubernetesConfigError as exc:
            raise ComponentError(str(exc)) from None
        self._core = CoreV1Api(self._client)
        _log.info(
            "secret store %s: Kubernetes Secrets, default namespace %r",
            self._name,
            self._namespace,
        )

    def features(self) -> frozenset[str]:
        return frozenset({MULTIPLE_KEY_VALUES_PER_SECRET})

    def _target(self, metadata: Mapping[str, str]) -> tuple[CoreV1Api, str]:
        if self._core is None:
            raise ComponentError(f"secret store {self._name} is closed")
        namespace = metadata.get("namespace") or self._namespace
        if not namespace:
            raise MetadataError(
                "namespace",
                "no namespace to read from: pass request metadata 'namespace', set the "
                "component's 'defaultNamespace', or set NAMESPACE",
            )
        if not _NAMESPACE.match(namespace):
            raise MetadataError("namespace", f"{namespace!r} is not a namespace name")
        return self._core, namespace

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        core, namespace = self._target(metadata)
        if not _SECRET_NAME.match(key) or len(key) > 253:
            raise ComponentError(f"secret {key} not found")
        try:
            secret = await core.read_namespaced_secret(
                key, namespace, _request_timeout=_REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                raise ComponentError(f"secret {key} not found") from None
            raise ComponentError(
                f"cannot read secret {key} in namespace {namespace}: {api_error_text(exc)}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ComponentError(
                f"cannot reach the Kubernetes API to read secret {key}: {api_error_text(exc)}"
            ) from None
        return _decode_data(key, secret.data)

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        core, namespace = self._target(metadata)
        try:
            listed = await core.list_namespaced_secret(namespace, _request_timeout=_REQUEST_TIMEOUT)
        except ApiException as exc:
            raise ComponentError(
                f"cannot list secrets in namespace {namespace}: {api_error_text(exc)}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ComponentError(
                f"cannot reach the Kubernetes API to list secrets: {api_error_text(exc)}"
            ) from None
        return {
            item.metadata.name: _decode_data(item.metadata.name, item.data) for item in listed.items
        }

    async def close(self) -> None:
        client, self._client, self._core = self._client, None, None
        if client is not None:
            await client.close()
