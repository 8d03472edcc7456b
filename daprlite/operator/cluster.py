"""The operator's calls to the Kubernetes API: workload lists and watches, Service changes.

Between the reconciler (``operator.reconcile``) and the API server. Objects
travel as plain JSON maps, as the server sends them (no client models, so a
field the client does not know is never dropped). Lists come in pages of
``page_size`` (``limit``/``continue``), and of each workload only its
:class:`~daprlite.operator.desired.WorkloadState` is kept, so a cluster with
many workloads never sits in memory whole. Every failed call raises
:class:`APIError` with the HTTP status and the server's message; the
reconciler retries those with backoff. The watches reuse
:class:`~daprlite.kubernetes.watch.ResumableWatch` (resume on resourceVersion,
re-list on 410) for each workload kind across all namespaces, and report each
attempt to open one (``on_attempt``) for the health endpoint.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import cast
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio.client import ApiClient, AppsV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from daprlite.kubernetes.client import api_error_text
from daprlite.kubernetes.watch import ResumableWatch
from daprlite.operator.desired import (
    DEPLOYMENT,
    MANAGED_SELECTOR,
    WorkloadKind,
    WorkloadState,
    workload_state,
)

REQUEST_TIMEOUT = 30.0  # seconds for one call other than a watch
PAGE_SIZE = 500  # objects per list request
Object = Mapping[str, object]
AttemptReport = Callable[[WorkloadKind, bool], None]  # (kind, whether the call succeeded)


class APIError(Exception):
    """A call the API server refused or could not be reached for."""

    def __init__(self, what: str, status: int | None, detail: str) -> None:
        super().__init__(f"{what}: {detail}")
        self.http_status = status


def _path(*segments: str) -> str:
    return "/".join(quote(s, safe="") for s in segments)


class Cluster:
    """The operator's view of the API server, through one client."""

    def __init__(self, client: ApiClient, page_size: int = PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError(f"page_size: expected at least 1, got {page_size}")
        self._client = client
        self._apps = AppsV1Api(client)
        self._page_size = page_size

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: Object | None = None,
        content_type: str = "application/json",
    ) -> Object:
        try:
            doc = await self._client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                response_types_map={200: "object", 201: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            raise APIError(what, exc.status, api_error_text(exc)) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise APIError(what, None, f"API server unreachable: {api_error_text(exc)}") from None
        if not isinstance(doc, Mapping):
            raise APIError(what, None, "the API server answered no object")
        return doc

    async def _pages(
        self, what: str, path: str, query: list[tuple[str, str]]
    ) -> AsyncIterator[tuple[list[Object], str]]:
        """Each page of a list: its items, and the list's resourceVersion (the first page's)."""
        token, version, page = "", "", 1
        while True:
            paging = [("limit", str(self._page_size))]
            if token:
                paging.append(("continue", token))
            doc = await self._call(f"{what} (page {page})", "GET", path, [*query, *paging])
            items, page_version = _items(doc)
            version = version or page_version
            yield items, version
            meta = doc.get("metadata")
            token = str(meta.get("continue") or "") if isinstance(meta, Mapping) else ""
            if not token:
                return
            page += 1

    async def list_workloads(self, kind: WorkloadKind) -> tuple[list[WorkloadState], str]:
        """The state of every ``kind`` in every namespace, and the list's resourceVersion."""
        states: list[WorkloadState] = []
        version = ""
        async for items, page_version in self._pages(
            f"listing {kind.plural}", f"/apis/{kind.api_version}/{kind.plural}", []
        ):
            states.extend(workload_state(kind, item) for item in items)
            version = page_version
        return states, version

    async def list_managed_services(self) -> list[Object]:
        """The Services the operator made, in every namespace."""
        out: list[Object] = []
        async for items, _ in self._pages(
            "listing managed services in all namespaces",
            "/api/v1/services",
            [("labelSelector", MANAGED_SELECTOR)],
        ):
            out.extend(items)
        return out

    async def get_service(self, namespace: str, name: str) -> Object | None:
        try:
            return await self._call(
                f"getting service {namespace}/{name}",
                "GET",
                f"/api/v1/namespaces/{_path(namespace)}/services/{_path(name)}",
            )
        except APIError as exc:
            if exc.http_status == 404:
                return None
            raise

    async def create_service(self, namespace: str, body: Object) -> Object:
        return await self._call(
            f"creating a service in namespace {namespace}",
            "POST",
            f"/api/v1/namespaces/{_path(namespace)}/services",
            body=body,
        )

    async def patch_service(self, namespace: str, name: str, patch: Object) -> Object:
        return await self._call(
            f"patching service {namespace}/{name}",
            "PATCH",
            f"/api/v1/namespaces/{_path(namespace)}/services/{_path(name)}",
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete_service(self, namespace: str, name: str) -> bool:
        """Delete it; False when it was already gone."""
        try:
            await self._call(
                f"deleting service {namespace}/{name}",
                "DELETE",
                f"/api/v1/namespaces/{_path(namespace)}/services/{_path(name)}",
            )
        except APIError as exc:
            if exc.http_status == 404:
                return False
            raise
        return True

    def watch(self, kind: WorkloadKind, on_attempt: AttemptReport | None = None) -> WorkloadWatch:
        return WorkloadWatch(self._apps, kind, on_attempt)


def _items(doc: Object) -> tuple[list[Object], str]:
    items = doc.get("items")
    meta = doc.get("metadata")
    version = meta.get("resourceVersion", "") if isinstance(meta, Mapping) else ""
    objects = [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []
    return objects, str(version or "")


class WorkloadWatch(ResumableWatch):
    """Watch of one workload kind in all namespaces."""

    def __init__(
        self, apps: AppsV1Api, kind: WorkloadKind, on_attempt: AttemptReport | None = None
    ) -> None:
        super().__init__(f"{kind.plural}.apps in all namespaces")
        self._apps = apps
        self._kind = kind
        self._on_attempt = on_attempt

    def _report(self, ok: bool) -> None:
        if self._on_attempt is not None:
            self._on_attempt(self._kind, ok)

    async def _open(
        self, resource_version: str, timeout_seconds: int, request_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        lister = (
            self._apps.list_deployment_for_all_namespaces
            if self._kind == DEPLOYMENT
            else self._apps.list_stateful_set_for_all_namespaces
        )
        try:
            # With _preload_content=False the client hands back the raw response, not a model.
            raw = await lister(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=request_timeout,
            )
        except Exception:
            self._report(False)
            raise
        response = cast("aiohttp.ClientResponse", raw)
        # 410 is an answer too: the watch lists again, and that list reports for itself.
        self._report(response.status in (200, 410))
        return response
