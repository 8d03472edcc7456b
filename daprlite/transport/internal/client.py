"""The caller side of the sidecar-to-sidecar hop: one pooled aiohttp session.

Implements :class:`daprlite.blocks.invoke.api.RemoteInvoker`. A connection
that cannot be opened, or that drops before an answer, is
:class:`CalleeUnavailableError` (what Dapr's built-in retries retry); a
refusal by the callee's sidecar comes back as the same catalogue error.
"""

from __future__ import annotations

import json
import ssl

import aiohttp
from multidict import CIMultiDict

from daprlite.blocks.invoke.api import CalleeUnavailableError
from daprlite.blocks.invoke.model import Caller, InvokeRequest, InvokeResponse
from daprlite.components.nameresolution.api import Address
from daprlite.observability.tracing import TraceContext
from daprlite.security.mtls import dns_name
from daprlite.transport.internal import wire


class InternalClient:
    """With ``tls`` (the workload identity's client context) every hop is mTLS, and the
    callee's certificate must name the app that was meant (checked in the handshake)."""

    def __init__(self, max_body_size: int, tls: ssl.SSLContext | None = None) -> None:
        self._max_body_size = max_body_size
        self._tls = tls
        self._scheme = "https" if tls is not None else "http"
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, keepalive_timeout=30, ssl=self._tls if self._tls is not None else True
            ),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        address: Address,
        callee: Caller,
        req: InvokeRequest,
        caller: Caller,
        trace: TraceContext,
    ) -> InvokeResponse:
        if self._session is None:
            raise CalleeUnavailableError("the sidecar is shutting down")
        host = f"[{address.host}]" if ":" in address.host else address.host
        url = f"{self._scheme}://{host}:{address.internal_port}{wire.request_path(req.method)}"
        headers = CIMultiDict(wire.request_headers(req, callee, caller))
        headers.update(trace.headers())
        try:
            async with self._session.post(
                url,
                data=req.body,
                headers=headers,
                allow_redirects=False,
                server_hostname=dns_name(callee.app_id, callee.namespace) if self._tls else None,
            ) as resp:
                body = await resp.read()
                kind = resp.headers.get(wire.H_ERROR)
                if kind is None:
                    return wire.parse_response(resp.headers.items(), body)
        except aiohttp.ClientConnectionError as exc:
            raise CalleeUnavailableError(
                f"the sidecar of {callee.app_id!r} at {address.host}:{address.internal_port} "
                f"cannot be reached: {exc}"
            ) from exc
        message = _message(body) or f"the callee's sidecar answered {resp.status}"
        if kind == wire.ERROR_UNAVAILABLE:
            raise CalleeUnavailableError(message)
        raise wire.refusal_entry(resp.status)(message)


def _message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("message", "")) if isinstance(parsed, dict) else ""
