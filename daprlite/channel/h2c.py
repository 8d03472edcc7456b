"""The h2c app channel (``--app-protocol h2c``): HTTP/2 without TLS, with prior knowledge.

Same contract as :class:`HTTPAppChannel` (bindings delivery, invocation,
health probes, and the app pipeline on every call but the probes), but
spoken as cleartext HTTP/2, which servers that accept only h2c (no HTTP/1.1
upgrade) require. aiohttp has no HTTP/2 client, so this
channel uses httpx with the h2 library (the ``h2c`` extra); one pooled
client multiplexes every call over one connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from daprlite.blocks.invoke.headers import response_headers
from daprlite.blocks.invoke.model import APP_HTTP, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import method_to_path
from daprlite.blocks.middleware import Pipeline, Refusal
from daprlite.channel.errors import AppUnavailableError
from daprlite.channel.http import (
    AppResponse,
    HTTPAppChannel,
    refused_invocation,
    refused_response,
)

try:
    import httpx
except ImportError:  # pragma: no cover - exercised only without the extra
    httpx = None  # type: ignore[assignment]


class H2CAppChannel(HTTPAppChannel):
    def __init__(
        self,
        host: str,
        port: int,
        max_concurrency: int = -1,
        app_token: str | None = None,
        pipeline: Pipeline | None = None,
        own_client: str = "",
    ) -> None:
        super().__init__(host, port, "http", max_concurrency, app_token, pipeline, own_client)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        try:
            import h2  # noqa: F401  (httpx needs it for HTTP/2)
        except ImportError:
            h2_missing = True
        else:
            h2_missing = False
        if httpx is None or h2_missing:
            raise RuntimeError(
                "--app-protocol h2c needs httpx with HTTP/2 support; install it with: "
                "pip install 'daprlite[h2c]'"
            )
        self._client = httpx.AsyncClient(
            http1=False,
            http2=True,
            timeout=httpx.Timeout(None, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _send(
        self,
        method: str,
        url: str,
        body: bytes,
        headers: list[tuple[str, str]],
        timeout: float | None = None,
    ) -> httpx.Response:
        if self._client is None:
            raise AppUnavailableError("the app channel is closed")
        gate = self._gate or contextlib.nullcontext()
        try:
            async with gate:
                return await self._client.request(
                    method,
                    url,
                    content=body or None,
                    headers=headers,
                    timeout=httpx.Timeout(timeout, connect=5.0),
                )
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"the app at {self.base_url} did not answer in time") from exc
        except httpx.TransportError as exc:
            raise AppUnavailableError(
                f"the h2c app at {self.base_url} cannot be reached: {exc}"
            ) from exc

    def _with_token(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*headers, ("dapr-api-token", self._token)] if self._token else headers

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AppResponse:
        route, _, query = path.lstrip("/").partition("?")
        screened = await self.screen(method, "/" + route, query, list((headers or {}).items()))
        if isinstance(screened, Refusal):
            return refused_response(screened)
        url = f"{self.base_url}/{path.lstrip('/')}"
        resp = await self._send(method, url, body, self._with_token(screened), timeout)
        return AppResponse(
            resp.status_code,
            CIMultiDictProxy(CIMultiDict(resp.headers.multi_items())),
            resp.content,
        )

    async def invoke(
        self, req: InvokeRequest, headers: list[tuple[str, str]], client: str = ""
    ) -> InvokeResponse:
        path = method_to_path(req.method)
        screened = await self.screen(req.verb, path, req.query, headers, client)
        if isinstance(screened, Refusal):
            return refused_invocation(screened)
        out = list(screened)
        if req.content_type:
            out.append(("content-type", req.content_type))
        query = f"?{req.query}" if req.query else ""
        url = f"{self.base_url}{path}{query}"
        resp = await self._send(req.verb, url, req.body, self._with_token(out))
        return InvokeResponse(
            app_protocol=APP_HTTP,
            status=resp.status_code,
            headers=response_headers(resp.headers.multi_items()),
            body=resp.content,
            content_type=resp.headers.get("content-type", ""),
        )

    async def health_check(self, path: str, timeout: float) -> bool:
        try:
            resp = await self._send("GET", f"{self.base_url}/{path.lstrip('/')}", b"", [], timeout)
        except (AppUnavailableError, TimeoutError):
            return False
        return 200 <= resp.status_code < 300
