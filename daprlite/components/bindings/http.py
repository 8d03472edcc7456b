"""``bindings.http``: an output binding that calls one HTTP(S) endpoint with aiohttp.

``blocks.bindings`` calls :meth:`HTTPBinding.invoke` for ``POST
/v1.0/bindings/{name}``. The operation is the HTTP verb (``create`` means
POST), request metadata ``path`` is appended to the component's ``url``,
metadata keys that start with an upper-case letter become request headers,
and the reply comes back as the body plus ``statusCode``, ``status`` and every
response header in the response metadata — all as in Dapr. One
``ClientSession`` per component, opened in :meth:`~HTTPBinding.init` and closed
in :meth:`~HTTPBinding.close`, holds the connection pool and the one TLS
context built at init. Redirects are followed by hand (as Go's client does) so
that the security token and credentials never follow a redirect to another
origin, and no cookie jar is kept, so one app's cookies never reach another's
request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import aiohttp
from yarl import URL

from daprlite.components.bindings._http import (
    HEADER_NAME,
    canonical_header,
    origin,
    parse_quantity,
    tls_context,
)
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, parse_bool, setting

_log = logging.getLogger("daprlite.component.bindings")

# Dapr has no timeout unless responseTimeout is set; a sidecar should never
# wait forever on a dead upstream, so an unset (or zero) responseTimeout means this.
DEFAULT_RESPONSE_TIMEOUT = 60.0
MAX_REDIRECTS = 10  # Go's http.Client default
_CHUNK = 64 * 1024

_METHODS = {
    "create": "POST",
    "get": "GET",
    "head": "HEAD",
    "post": "POST",
    "put": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "options": "OPTIONS",
    "trace": "TRACE",
}
_JSON = "application/json; charset=utf-8"
_TRACE_KEYS = ("traceparent", "tracestate", "baggage")
# Framing headers are the client's to set, as in Go (which ignores them in
# Header): a caller-chosen Content-Length would desynchronise the connection.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host"})
# Dropped when a redirect leaves the origin (Go drops the same, less our token).
_CREDENTIAL_HEADERS = frozenset({"authorization", "www-authenticate", "cookie", "cookie2"})
_RENEGOTIATION = ("RenegotiateNever", "RenegotiateOnceAsClient", "RenegotiateFreelyAsClient")


class HTTPStatusError(ComponentError):
    """The endpoint answered with a non-2xx status and errorIfNot2XX was on.

    ``status_code`` is the upstream status; ``response`` carries the body and
    the response metadata, which Dapr also returns alongside the error.
    """

    def __init__(self, message: str, status_code: int, response: InvokeResponse) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.response = response


@dataclass(frozen=True, slots=True)
class HTTPBindingSettings:
    """Component metadata of ``bindings.http``, with Dapr's (case-insensitive) names."""

    url: str = setting(
        required=True,
        doc="Base URL (http:// or https://); request metadata `path` is appended to it.",
    )
    responseTimeout: Duration | None = setting(
        None,
        doc="Deadline of a whole call, redirects and body included. Unset or 0 means 60s "
        "(Dapr waits forever; a sidecar should not).",
    )
    maxResponseBodySize: str = setting(
        "100Mi",
        doc="Largest response body accepted, as a byte count or a Kubernetes quantity "
        "(`100Mi`, `1Gi`, `500k`); a larger body fails the call.",
    )
    errorIfNot2XX: bool = setting(
        True, doc="Fail calls answered with a non-2xx status; a request may override it."
    )
    securityToken: str = setting(
        "", doc="Value of securityTokenHeader added to every request. Never logged."
    )
    securityTokenHeader: str = setting("", doc="Header name that carries securityToken.")
    MTLSRootCA: str = setting(
        "", doc="CA certificate(s) that the server must chain to: PEM text or a PEM file path."
    )
    MTLSClientCert: str = setting(
        "", doc="Client certificate for mutual TLS: PEM text or a PEM file path."
    )
    MTLSClientKey: str = setting("", doc="Private key of MTLSClientCert: PEM text or a path.")
    MTLSRenegotiation: str = setting(
        "",
        doc="`RenegotiateNever` refuses TLS 1.2 renegotiation; the other Go values leave "
        "OpenSSL's default, which lets the server renegotiate securely.",
    )
    insecureSkipTLSVerify: bool = setting(
        False, doc="Accept any server certificate and host name (testing only)."
    )

    def __post_init__(self) -> None:
        self.base_url()
        self.body_limit()
        if self.responseTimeout is not None and self.responseTimeout < 0:
            raise MetadataError(
                "responseTimeout", f"expected a duration >= 0, got {self.responseTimeout}s"
            )
        if self.securityToken and not self.securityTokenHeader:
            raise MetadataError("securityTokenHeader", "is required when securityToken is set")
        if self.securityTokenHeader and not HEADER_NAME.fullmatch(self.securityTokenHeader):
            raise MetadataError(
                "securityTokenHeader",
                f"expected an HTTP header name, got {self.securityTokenHeader!r}",
            )
        if bool(self.MTLSClientCert) != bool(self.MTLSClientKey):
            missing = "MTLSClientKey" if self.MTLSClientCert else "MTLSClientCert"
            raise MetadataError(
                missing, "is required when the other of MTLSClientCert/MTLSClientKey is set"
            )
        if self.MTLSRenegotiation and self.MTLSRenegotiation not in _RENEGOTIATION:
            raise MetadataError(
                "MTLSRenegotiation",
                f"expected one of {', '.join(_RENEGOTIATION)}, got {self.MTLSRenegotiation!r}",
            )

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never show the token or a private key.
        hidden = {"securityToken", "MTLSClientKey"}
        shown = (
            f"{f}={'***' if f in hidden and getattr(self, f) else repr(getattr(self, f))}"
            for f in self.__dataclass_fields__
        )
        return f"HTTPBindingSettings({', '.join(shown)})"

    def base_url(self) -> URL:
        try:
            url = URL(self.url.strip())
        except ValueError as exc:
            raise MetadataError("url", f"expected an http(s) URL, got {self.url!r}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise MetadataError("url", f"expected an http:// or https:// URL, got {self.url!r}")
        return url

    def body_limit(self) -> int:
        try:
            return parse_quantity(self.maxResponseBodySize)
        except ValueError as exc:
            raise MetadataError("maxResponseBodySize", f"expected {exc}") from None

    def timeout(self) -> float:
        return self.responseTimeout or DEFAULT_RESPONSE_TIMEOUT

    def wants_tls_context(self) -> bool:
        return bool(
            self.MTLSRootCA
            or self.MTLSClientCert
            or self.insecureSkipTLSVerify
            or self.MTLSRenegotiation == "RenegotiateNever"
        )


class HTTPBinding:
    """Output binding: one verb per operation against ``url`` + metadata ``path``."""

    def __init__(self) -> None:
        self.settings: HTTPBindingSettings | None = None
        self._name = ""
        self._base = URL()
        self._limit = 0
        self._session: aiohttp.ClientSession | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(HTTPBindingSettings, metadata.properties)
        self._name = metadata.name
        self._base = settings.base_url()
        self._limit = settings.body_limit()
        tls: ssl.SSLContext | bool = True
        if settings.wants_tls_context():
            tls = await asyncio.to_thread(
                tls_context,
                root_ca=settings.MTLSRootCA,
                client_cert=settings.MTLSClientCert,
                client_key=settings.MTLSClientKey,
                skip_verify=settings.insecureSkipTLSVerify,
                no_renegotiation=settings.MTLSRenegotiation == "RenegotiateNever",
            )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),  # one deadline per call, in invoke
        )
        self.settings = settings
        _log.info(
            "output binding %r: HTTP endpoint %s (timeout %gs, tls context %s)",
            self._name,
            self._base.origin(),
            settings.timeout(),
            "custom" if tls is not True else "default",
        )

    def operations(self) -> Sequence[str]:
        return tuple(_METHODS)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- request building ------------------------------------------------------------
    def _url(self, metadata: Mapping[str, str]) -> URL:
        path = metadata.get("path", "")
        base = str(self._base)
        if not path:
            return self._base
        if "\x00" in path or "\r" in path or "\n" in path:
            raise MetadataError("path", "must not contain NUL, CR or LF characters")
        # Dapr refuses ".." anywhere in the URL; we also look through %2e%2e.
        if ".." in path or ".." in unquote(path):
            raise MetadataError("path", f"must not contain '..', got {path!r}")
        try:
            url = URL(f"{base.rstrip('/')}/{path.lstrip('/')}")
        except ValueError as exc:
            raise MetadataError("path", f"does not make a valid URL: {path!r}") from exc
        if origin(url) != origin(self._base):  # cannot happen after a '/', but never trust it
            raise MetadataError("path", f"must stay on {self._base.origin()}, got {path!r}")
        return url

    def _headers(self, metadata: Mapping[str, str]) -> dict[str, str]:
        headers: dict[str, str] = {}
        for key, value in metadata.items():
            if not key[:1].isupper():
                continue
            if not HEADER_NAME.fullmatch(key):
                raise MetadataError(key, "is not a valid HTTP header name")
            if any(c in value for c in "\r\n\x00"):
                raise MetadataError(key, "header value must not contain CR, LF or NUL")
            if key.lower() in _FRAMING_HEADERS:
                continue
            headers[canonical_header(key)] = value
        for key in _TRACE_KEYS:
            if metadata.get(key) and canonical_header(key) not in headers:
                headers[canonical_header(key)] = metadata[key]
        headers.setdefault("Content-Type", _JSON)
        headers.setdefault("Accept", _JSON)
        s = self.settings
        if s is not None and s.securityToken:
            headers[canonical_header(s.securityTokenHeader)] = s.securityToken
        return headers

    def _error_if_not_2xx(self, metadata: Mapping[str, str]) -> bool:
        raw = metadata.get("errorIfNot2XX")
        if raw is None:
            return self.settings.errorIfNot2XX if self.settings else True
        try:
            return parse_bool(raw)
        except ValueError as exc:
            raise MetadataError("errorIfNot2XX", f"expected true or false, got {raw!r}") from exc

    # -- contract -------------------------------------------------------------------
    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        method = _METHODS.get(req.operation)
        if method is None:
            raise UnsupportedOperationError(
                f"output binding {self._name!r} does not support operation {req.operation!r}"
            )
        session = self._session
        if session is None or self.settings is None:
            raise ComponentError(f"output binding {self._name!r} is not initialised or closed")
        url = self._url(req.metadata)
        headers = self._headers(req.metadata)
        raise_on_status = self._error_if_not_2xx(req.metadata)
        timeout = self.settings.timeout()
        try:
            async with asyncio.timeout(timeout):
                status, reason, resp_headers, body = await self._exchange(
                    session, method, url, headers, req.data
                )
        except TimeoutError as exc:
            raise ComponentError(
                f"output binding {self._name!r}: {method} to {url.origin()} "
                f"timed out after {timeout:g}s"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:  # OSError: a TLS or socket failure
            raise ComponentError(
                self._scrub(
                    f"output binding {self._name!r}: {method} to {url.origin()} failed: {exc}"
                )
            ) from exc
        meta = {"statusCode": str(status), "status": f"{status} {reason}".rstrip()}
        meta.update(resp_headers)
        response = InvokeResponse(data=body, metadata=meta)
        if raise_on_status and not 200 <= status < 300:
            raise HTTPStatusError(
                f"output binding {self._name!r}: {method} to {url.origin()} received "
                f"status code {status}",
                status,
                response,
            )
        return response

    def _scrub(self, message: str) -> str:
        token = self.settings.securityToken if self.settings else ""
        return message.replace(token, "***") if token else message

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: dict[str, str],
        data: bytes,
    ) -> tuple[int, str, dict[str, str], bytes]:
        """Send the request, following redirects as Go's client does; read the body."""
        body: bytes | None = data or None
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status not in (301, 302, 303, 307, 308) or not location:
                    return resp.status, resp.reason or "", self._meta(resp), await self._read(resp)
            try:
                target = url.join(URL(location))
            except ValueError as exc:
                raise aiohttp.ClientError(f"redirect to an invalid URL: {exc}") from exc
            if target.scheme not in ("http", "https"):
                raise aiohttp.ClientError(f"redirect to unsupported URL scheme {target.scheme!r}")
            if resp.status in (301, 302, 303):
                # As in Go: the body is dropped and anything but HEAD becomes GET.
                body = None
                method = "HEAD" if method == "HEAD" else "GET"
            if origin(target) != origin(url):
                headers = self._strip_credentials(headers)
            url = target
        raise aiohttp.ClientError(f"stopped after {MAX_REDIRECTS} redirects")

    def _strip_credentials(self, headers: dict[str, str]) -> dict[str, str]:
        token_header = (self.settings.securityTokenHeader if self.settings else "").lower()
        drop = _CREDENTIAL_HEADERS | ({token_header} if token_header else set())
        return {k: v for k, v in headers.items() if k.lower() not in drop}

    @staticmethod
    def _meta(resp: aiohttp.ClientResponse) -> dict[str, str]:
        grouped: dict[str, list[str]] = {}
        for key, value in resp.headers.items():
            grouped.setdefault(canonical_header(key), []).append(value)
        return {k: ", ".join(v) for k, v in grouped.items()}

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        """The body, refused as soon as it grows past maxResponseBodySize (decompressed)."""
        # A HEAD reply announces the length of a body it never sends.
        announced = resp.content_length if resp.method != "HEAD" else None
        if announced is not None and announced > self._limit:
            raise self._too_big(resp)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self._limit:
                raise self._too_big(resp)
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_big(self, resp: aiohttp.ClientResponse) -> ComponentError:
        return ComponentError(
            f"output binding {self._name!r}: response from {resp.url.origin()} is larger than "
            f"maxResponseBodySize ({self._limit} bytes)"
        )
