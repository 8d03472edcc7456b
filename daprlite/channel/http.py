"""The HTTP app channel: how the sidecar calls its own app over HTTP.

One pooled aiohttp session per sidecar. ``--app-max-concurrency`` bounds the
calls in flight; with ``APP_API_TOKEN`` set, every call carries it as
``dapr-api-token``. ``https`` apps are reached over TLS without certificate
verification (the app is local and usually self-signed, as in Dapr);
``h2c`` apps have their own channel (``channel/h2c.py``).

The app pipeline (``spec.appHttpPipeline``) runs here, on every call the
sidecar makes to its app, as in Dapr: :meth:`HTTPAppChannel.invoke`
(invocations) and :meth:`HTTPAppChannel.request` (pub/sub deliveries, single
and bulk, input-binding events and their ``OPTIONS`` probe,
``GET /dapr/subscribe``). The channel is the one place every such call passes,
so no caller can forget the pipeline; :meth:`HTTPAppChannel.health_check`
alone bypasses it, so a limiter or a token check never makes a healthy app
look unhealthy. The pipeline runs before a call takes an
``--app-max-concurrency`` slot (a refused call never occupies one) and sees
the call's headers without the app token. A refusal comes back as the app's
answer would (its status, its ``Retry-After``/``WWW-Authenticate`` headers, an
``{errorCode, message}`` body), so each caller handles it as it handles that
status from the app. The handlers key on a client: an invocation's caller
(:func:`~daprlite.blocks.middleware.invocation_client`), and for every other
call this sidecar's own ``app-id.namespace``. Those calls carry no
``Authorization`` header, so ``middleware.http.bearer`` on the app pipeline
refuses them: it only suits an app that receives nothing but invocations
that carry tokens.
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
from daprlite.blocks.middleware import Pipeline, Refusal
from daprlite.channel.errors import AppUnavailableError
from daprlite.channel.metrics import app_call_traces
from daprlite.components.middleware.api import MiddlewareRequest
from daprlite.observability.metrics import Metrics


@dataclass(frozen=True, slots=True)
class AppResponse:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


Pairs = list[tuple[str, str]]


def refused_response(refusal: Refusal) -> AppResponse:
    """A refusal of the app pipeline, in the shape of the app's answer."""
    headers = CIMultiDict(refusal.headers)
    headers["Content-Type"] = refusal.content_type
    return AppResponse(refusal.status, CIMultiDictProxy(headers), refusal.body)


def refused_invocation(refusal: Refusal) -> InvokeResponse:
    """A refused invocation: it travels back like an HTTP app's error answer."""
    return InvokeResponse(
        app_protocol=APP_HTTP,
        status=refusal.status,
        headers=refusal.headers,
        body=refusal.body,
        content_type=refusal.content_type,
    )


class HTTPAppChannel:
    def __init__(
        self,
        host: str,
        port: int,
        protocol: str = "http",
        max_concurrency: int = -1,
        app_token: str | None = None,
        pipeline: Pipeline | None = None,
        own_client: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        scheme = "https" if protocol == "https" else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self._gate = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._token = app_token
        self._session: aiohttp.ClientSession | None = None
        self._pipeline = pipeline  # spec.appHttpPipeline
        self._own_client = own_client  # the client key of calls made on the sidecar's behalf
        self._metrics = metrics  # dapr_http_client_* (channel/metrics.py)

    async def start(self) -> None:
        # ssl=False: https apps are local and usually self-signed (no verification).
        connector = aiohttp.TCPConnector(limit=0, ssl=False)
        # auto_decompress=False: an app's compressed body goes back to the caller
        # byte for byte, with its Content-Encoding.
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            trace_configs=app_call_traces(self._metrics),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def screen(
        self, verb: str, path: str, query: str, headers: Pairs, client: str = ""
    ) -> Pairs | Refusal:
        """Run the app pipeline on a call: the headers to send, or the refusal.

        ``path`` is the one the app will see (leading ``/``); ``client`` is
        the invocation's caller, empty for calls on the sidecar's own behalf.
        """
        pipeline = self._pipeline
        if pipeline is None or pipeline.empty:
            return headers
        request = MiddlewareRequest(
            verb=verb.upper(),
            path=path,
            query=query,
            headers=tuple((k.lower(), v) for k, v in headers),
            client=client or self._own_client,
        )
        out = await pipeline.screen(request)
        if isinstance(out, Refusal):
            return out
        return headers if out.headers == request.headers else list(out.headers)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> AppResponse:
        """One call to the app, through the app pipeline.

        Raises aiohttp.ClientError / TimeoutError when it fails; a refusal of
        the pipeline comes back as the answer (see the module docstring).
        """
        if self._session is None:
            raise ConnectionError("the app channel is closed")
        route, _, query = path.lstrip("/").partition("?")
        screened = await self.screen(method, "/" + route, query, list((headers or {}).items()))
        if isinstance(screened, Refusal):
            return refused_response(screened)
        out = dict(screened)
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

    async def invoke(
        self, req: InvokeRequest, headers: list[tuple[str, str]], client: str = ""
    ) -> InvokeResponse:
        """Deliver one service invocation; the app's answer comes back whatever its status.

        ``client`` is the caller as the app pipeline's handlers key on it. A
        refusal of the pipeline comes back as the answer. Raises
        :class:`AppUnavailableError` when the app cannot be reached.
        """
        if self._session is None:
            raise AppUnavailableError("the app channel is closed")
        path = method_to_path(req.method)
        screened = await self.screen(req.verb, path, req.query, headers, client)
        if isinstance(screened, Refusal):
            return refused_invocation(screened)
        out = CIMultiDict(screened)
        if req.content_type:
            out["Content-Type"] = req.content_type
        if self._token:
            out["dapr-api-token"] = self._token
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
        """GET the app's health path: healthy on 2xx.

        Probes bypass the app pipeline and carry no app token, as in Dapr.
        """
        if self._session is None:
            return False
        try:
            async with self._session.get(
                f"{self.base_url}/{path.lstrip('/')}", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False
