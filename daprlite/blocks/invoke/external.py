"""Invoking services outside daprlite: a URL, or an ``HTTPEndpoint`` resource.

dapr-api.md 3.6 and 10.5. ``/v1.0/invoke/https%3A%2F%2Fapi.example.com/method/v1/x``
calls that URL directly; ``/v1.0/invoke/<endpoint>/method/v1/x`` calls the
``spec.baseUrl`` of the HTTPEndpoint named ``<endpoint>``, adding its
``spec.headers`` (plain values, ``envRef``, or ``secretKeyRef`` read through
the secrets block at start-up). No sidecar is involved on the other side, so
the call carries no Dapr identity headers, only the caller's headers and the
trace context.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from daprlite.blocks.invoke.headers import response_headers
from daprlite.blocks.invoke.model import APP_HTTP, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import method_to_path
from daprlite.config.resources import Resource, ResourceError
from daprlite.observability.tracing import TraceContext

SecretLookup = Callable[[str, str], Awaitable[dict[str, str]]]


class ExternalUnavailableError(ConnectionError):
    """The external service could not be reached."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    base_url: str
    headers: tuple[tuple[str, str], ...] = ()


def is_url(target: str) -> bool:
    return target.lower().startswith(("http://", "https://"))


def _check_url(url: str, res: Resource) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ResourceError(
            res.source,
            f"HTTPEndpoint {res.name!r}",
            "spec.baseUrl",
            f"expected an http:// or https:// URL, got {url!r}",
        )
    return url.rstrip("/")


def _env(name: str) -> str:
    # The sidecar's own credentials are never handed out, as for components.
    upper = name.upper()
    return "" if upper == "APP_API_TOKEN" or upper.startswith("DAPR_") else os.getenv(name, "")


async def _header_value(
    entry: Mapping[str, object], res: Resource, where: str, secret: SecretLookup
) -> str:
    if "value" in entry:
        return str(entry["value"])
    if isinstance(entry.get("envRef"), str):
        return _env(str(entry["envRef"]))
    ref = entry.get("secretKeyRef")
    label = f"HTTPEndpoint {res.name!r}"
    if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
        raise ResourceError(
            res.source, label, where, "needs value, envRef or secretKeyRef{name, key}"
        )
    store = res.spec.get("auth", {})
    store_name = store.get("secretStore", "") if isinstance(store, Mapping) else ""
    name = str(ref["name"])
    key = str(ref.get("key") or name)
    try:
        values = await secret(str(store_name), name)
    except Exception as exc:  # the catalogue error of the secrets block, or a store error
        raise ResourceError(
            res.source, label, f"{where}.secretKeyRef", f"cannot read secret {name!r}: {exc}"
        ) from exc
    if key not in values:
        raise ResourceError(
            res.source, label, f"{where}.secretKeyRef", f"secret {name!r} has no key {key!r}"
        )
    return values[key]


async def load_endpoints(
    resources: Iterable[Resource], secret: SecretLookup
) -> dict[str, Endpoint]:
    """HTTPEndpoint resources by name; every problem names the file and the field."""
    out: dict[str, Endpoint] = {}
    for res in resources:
        base = res.spec.get("baseUrl")
        if not isinstance(base, str) or not base:
            raise ResourceError(
                res.source, f"HTTPEndpoint {res.name!r}", "spec.baseUrl", "is required"
            )
        raw_headers = res.spec.get("headers") or []
        if not isinstance(raw_headers, list):
            raise ResourceError(
                res.source, f"HTTPEndpoint {res.name!r}", "spec.headers", "expected a list"
            )
        headers: list[tuple[str, str]] = []
        for i, entry in enumerate(raw_headers):
            where = f"spec.headers[{i}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise ResourceError(
                    res.source, f"HTTPEndpoint {res.name!r}", f"{where}.name", "is required"
                )
            headers.append((entry["name"], await _header_value(entry, res, where, secret)))
        out[res.name] = Endpoint(res.name, _check_url(base, res), tuple(headers))
    return out


class ExternalCaller:
    """One pooled aiohttp session for calls that leave daprlite."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        base_url: str,
        extra_headers: Iterable[tuple[str, str]],
        req: InvokeRequest,
        trace: TraceContext,
    ) -> InvokeResponse:
        if self._session is None:
            raise ExternalUnavailableError("the sidecar is shutting down")
        headers = CIMultiDict(req.headers)
        headers.extend(extra_headers)
        headers.update(trace.headers())
        if req.content_type:
            headers["Content-Type"] = req.content_type
        query = f"?{req.query}" if req.query else ""
        url = URL(f"{base_url.rstrip('/')}{method_to_path(req.method)}{query}", encoded=True)
        verb = req.verb if req.verb not in ("NONE", "CONNECT") else "POST"
        try:
            async with self._session.request(
                verb, url, data=req.body or None, headers=headers, allow_redirects=False
            ) as resp:
                return InvokeResponse(
                    app_protocol=APP_HTTP,
                    status=resp.status,
                    headers=response_headers(resp.headers.items()),
                    body=await resp.read(),
                    content_type=resp.headers.get("Content-Type", ""),
                )
        except aiohttp.ClientConnectionError as exc:
            raise ExternalUnavailableError(f"{base_url} cannot be reached: {exc}") from exc
