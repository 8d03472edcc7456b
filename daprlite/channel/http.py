"""The HTTP app channel: how the sidecar calls its own app over HTTP.

One pooled aiohttp session per sidecar. ``--app-max-concurrency`` bounds the
calls in flight; with ``APP_API_TOKEN`` set, every call carries it as
``dapr-api-token``. ``https`` apps are reached over TLS without certificate
verification (the app is local and usually self-signed, as in Dapr);
``h2c`` apps have their own channel (``channel/h2c.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from daprlite.blocks.invoke.headers import response_headers
from daprlite.blocks.invoke.model import APP_HTTP, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import method_to_path
from daprlite.channel.errors import AppUnavailableError


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class HTTPAppChannel:
    def __init__(
        self,
        host: str,
        port: int,
        protocol: str = "http",
        max_concurrency: int = -1,
        app_token: str | None = None,
    ) -> None:
        scheme = "https" if protocol == "https" else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._token = app_token
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # ssl=False: https apps are local and usually self-signed (no verification).
        connector = aiohttp.TCPConnector(limit=0, ssl=False)
        # auto_decompress=False: an app's compressed body goes back to the caller
        # byte for byte, with its Content-Encoding.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AppResponse:
        """One call to the app; raises aiohttp.ClientError / TimeoutError when it fails."""
        if self._session is None:
            raise ConnectionError("the app channel is closed")
        out = dict(headers or {})
        if self._token:
            out["dapr-api-token"] = self._token
        url = f"{self.base_url}/{path.lstrip('/')}"
        gate = self._gate or contextlib.nullcontext()
        async with (
            gate,
            self._session.request(
                method,
                url,
                data=body or None,
                headers=out,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp,
        ):
            return AppResponse(resp.status, resp.headers, await resp.read())

    async def invoke(self, req: InvokeRequest, headers: list[tuple[str, str]]) -> InvokeResponse:
        """Deliver one service invocation; the app's answer comes back whatever its status.

        Raises :class:`AppUnavailableError` when the app cannot be reached.
        """
        if self._session is None:
            raise AppUnavailableError("the app channel is closed")
        out = CIMultiDict(headers)
        if req.content_type:
            out["Content-Type"] = req.content_type
        if self._token:
            out["dapr-api-token"] = self._token
        path = method_to_path(req.method)
        url = URL(f"{self.base_url}{path}{'?' + req.query if req.query else ''}", encoded=True)
        gate = self._gate or contextlib.nullcontext()
        try:
            async with (
                gate,
                self._session.request(
                    req.verb,
                    url,
                    data=req.body if req.body or req.verb not in ("GET", "HEAD") else None,
                    headers=out,
                    skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                ) as resp,
            ):
                body = await resp.read()
                return InvokeResponse(
                    app_protocol=APP_HTTP,
                    status=resp.status,
                    headers=response_headers(resp.headers.items()),
                    body=body,
                    content_type=resp.headers.get("Content-Type", ""),
                )
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise AppUnavailableError(
                f"the app at {self.base_url} cannot be reached: {exc}"
            ) from exc

    async def health_check(self, path: str, timeout: float) -> bool:
        """GET the app's health path: healthy on 2xx. Probes carry no app token (as Dapr)."""
        if self._session is None:
            return False
        try:
            async with self._session.get(
                f"{self.base_url}/{path.lstrip('/')}", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False
