"""``bindings.http`` against real aiohttp servers that each test starts on a free port.

The servers record every request they receive, so the tests assert what
actually went over the wire: the verb, the joined path, the headers (and the
ones that must not be there), and the body. HTTPS servers use a throw-away CA
generated here with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

from daprlite.components.bindings.api import (
    InvokeRequest,
    OutputBinding,
    UnsupportedOperationError,
)
from daprlite.components.bindings.http import HTTPBinding, HTTPStatusError
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.registry import Registry

TOKEN = "s3cr3t-token-value"


# -- a recording server -----------------------------------------------------------------
@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: CIMultiDict[str]  # header names match case-insensitively
    body: bytes


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> Seen:
        assert self.seen, "the server received no request"
        return self.seen[-1]


def _app(server: Server, other: Server | None = None) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        server.seen.append(
            Seen(
                request.method,
                request.path,
                request.query_string,
                CIMultiDict(request.headers),
                body,
            )
        )
        parts = request.path.strip("/").split("/")
        if parts[0] == "status":
            return web.Response(status=int(parts[1]), body=b"upstream says no")
        if parts[0] == "multi":
            resp = web.Response(status=201, body=b"made")
            resp.headers.add("X-Multi", "a")
            resp.headers.add("X-Multi", "b")
            resp.headers["x-lower-case"] = "kept"
            return resp
        if parts[0] == "big":
            return web.Response(body=b"x" * int(parts[1]))
        if parts[0] == "chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(int(parts[1]) // 1000):
                await resp.write(b"y" * 1000)
            await resp.write_eof()
            return resp
        if parts[0] == "slow":
            await server.release.wait()
            return web.Response(body=b"late")
        if parts[0] == "redirect-same":
            raise web.HTTPTemporaryRedirect("/landed")
        if parts[0] == "redirect-see-other":
            raise web.HTTPSeeOther("/landed")
        if parts[0] == "redirect-other" and other is not None:
            raise web.HTTPFound(f"{other.url}/landed")
        if parts[0] == "redirect-loop":
            raise web.HTTPFound("/redirect-loop")
        return web.Response(body=b"echo:" + body, content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@asynccontextmanager
async def serve(
    tls: ssl.SSLContext | None = None, other: Server | None = None
) -> AsyncIterator[Server]:
    server = Server(url="")
    runner = web.AppRunner(_app(server, other))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()  # lets slow handlers finish so the runner stops at once
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with serve() as s:
        yield s


@asynccontextmanager
async def binding(**props: str) -> AsyncIterator[HTTPBinding]:
    b = HTTPBinding()
    await b.init(ComponentMetadata(name="web", type="bindings.http", properties=props))
    try:
        yield b
    finally:
        await b.close()


async def call(url: str, operation: str = "get", data: bytes = b"", **props: str):
    """Invoke once; keyword arguments that start with ``m_`` are request metadata."""
    meta = {k[2:]: v for k, v in props.items() if k.startswith("m_")}
    comp = {k: v for k, v in props.items() if not k.startswith("m_")}
    async with binding(url=url, **comp) as b:
        return await b.invoke(InvokeRequest(operation, data, meta))


# -- verbs, paths, headers ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("operation", "verb"),
    [
        ("create", "POST"),
        ("get", "GET"),
        ("head", "HEAD"),
        ("post", "POST"),
        ("put", "PUT"),
        ("patch", "PATCH"),
        ("delete", "DELETE"),
        ("options", "OPTIONS"),
        ("trace", "TRACE"),
    ],
)
async def test_each_operation_sends_its_http_verb(server: Server, operation: str, verb: str):
    resp = await call(server.url, operation, m_path="verb")
    assert server.last.method == verb
    assert server.last.path == "/verb"
    assert resp.metadata["statusCode"] == "200"
    assert resp.data == (b"" if verb == "HEAD" else b"echo:")


async def test_create_posts_the_data_and_returns_the_response_body(server: Server):
    resp = await call(server.url, "create", b'{"order": 7}', m_path="orders")
    assert server.last.body == b'{"order": 7}'
    assert resp.data == b'echo:{"order": 7}'


@pytest.mark.parametrize(
    ("base", "path"),
    [("/api", "items/1"), ("/api/", "/items/1"), ("/api//", "//items/1"), ("/api", "/items/1")],
)
async def test_path_is_joined_to_the_url_with_exactly_one_slash(
    server: Server, base: str, path: str
):
    await call(server.url + base, m_path=path)
    assert server.last.path == "/api/items/1"


async def test_url_alone_is_called_when_no_path_is_given(server: Server):
    await call(server.url + "/fixed/endpoint")
    assert server.last.path == "/fixed/endpoint"


async def test_path_may_carry_a_query_string(server: Server):
    await call(server.url, m_path="search?q=dapr&n=2")
    assert server.last.path == "/search"
    assert server.last.query == "q=dapr&n=2"


@pytest.mark.parametrize("path", ["../admin", "a/../../admin", "%2e%2e/admin", "a/%2E%2E/b"])
async def test_path_with_dot_dot_is_refused_before_anything_is_sent(server: Server, path: str):
    with pytest.raises(MetadataError) as info:
        await call(server.url, m_path=path)
    assert info.value.field == "path"
    assert server.seen == []


async def test_upper_case_metadata_keys_become_headers_and_lower_case_do_not(server: Server):
    await call(
        server.url,
        "post",
        b"hi",
        **{"m_X-Custom": "one", "m_lowerkey": "not-a-header", "m_Content-Type": "text/plain"},
    )
    headers = server.last.headers
    assert headers["X-Custom"] == "one"
    assert "lowerkey" not in {h.lower() for h in headers}
    assert headers["Content-Type"] == "text/plain"
    assert headers["Accept"] == "application/json; charset=utf-8"


async def test_content_type_and_accept_default_to_json(server: Server):
    await call(server.url, "create", b"{}")
    assert server.last.headers["Content-Type"] == "application/json; charset=utf-8"
    assert server.last.headers["Accept"] == "application/json; charset=utf-8"


async def test_trace_context_in_metadata_is_forwarded_as_headers(server: Server):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await call(server.url, m_traceparent=traceparent, m_tracestate="k=v", m_baggage="user=1")
    headers = server.last.headers
    assert headers["Traceparent"] == traceparent
    assert headers["Tracestate"] == "k=v"
    assert headers["Baggage"] == "user=1"


async def test_security_token_is_sent_on_every_request_and_wins_over_metadata(server: Server):
    async with binding(url=server.url, securityToken=TOKEN, securityTokenHeader="X-Token") as b:
        await b.invoke(InvokeRequest("get", metadata={"X-Token": "forged"}))
        await b.invoke(InvokeRequest("create", b"{}"))
    assert [s.headers["X-Token"] for s in server.seen] == [TOKEN, TOKEN]


async def test_header_value_with_a_line_break_is_refused_naming_the_header(server: Server):
    with pytest.raises(MetadataError) as info:
        await call(server.url, **{"m_X-Evil": "a\r\nInjected: yes"})
    assert info.value.field == "X-Evil"
    assert server.seen == []


async def test_caller_cannot_set_content_length(server: Server):
    resp = await call(server.url, "post", b"12345", **{"m_Content-Length": "2"})
    assert server.last.body == b"12345"
    assert resp.data == b"echo:12345"


# -- responses -----------------------------------------------------------------------------
async def test_response_metadata_has_status_code_status_and_headers(server: Server):
    resp = await call(server.url, m_path="multi")
    assert resp.data == b"made"
    assert resp.metadata["statusCode"] == "201"
    assert resp.metadata["status"] == "201 Created"
    assert resp.metadata["X-Multi"] == "a, b"
    assert resp.metadata["X-Lower-Case"] == "kept"  # Go's canonical header spelling
    assert resp.metadata["Content-Length"] == "4"


async def test_non_2xx_is_an_error_carrying_the_status_code_by_default(server: Server):
    with pytest.raises(HTTPStatusError) as info:
        await call(server.url, m_path="status/404")
    assert info.value.status_code == 404
    assert "404" in str(info.value)
    assert info.value.response.metadata["statusCode"] == "404"
    assert info.value.response.data == b"upstream says no"


async def test_non_2xx_is_returned_when_error_if_not_2xx_is_off(server: Server):
    resp = await call(server.url, m_path="status/503", errorIfNot2XX="false")
    assert resp.metadata["statusCode"] == "503"
    assert resp.metadata["status"] == "503 Service Unavailable"
    assert resp.data == b"upstream says no"


async def test_request_metadata_overrides_error_if_not_2xx_both_ways(server: Server):
    resp = await call(server.url, m_path="status/500", m_errorIfNot2XX="false")
    assert resp.metadata["statusCode"] == "500"
    with pytest.raises(HTTPStatusError) as info:
        await call(server.url, m_path="status/409", m_errorIfNot2XX="true", errorIfNot2XX="false")
    assert info.value.status_code == 409


async def test_bad_error_if_not_2xx_request_metadata_is_refused(server: Server):
    with pytest.raises(MetadataError) as info:
        await call(server.url, m_errorIfNot2XX="sometimes")
    assert info.value.field == "errorIfNot2XX"
    assert server.seen == []


@pytest.mark.parametrize("kind", ["big", "chunked"])
async def test_response_body_over_max_size_fails_and_at_the_limit_passes(server: Server, kind: str):
    ok = await call(server.url, m_path=f"{kind}/4000", maxResponseBodySize="4000")
    assert len(ok.data or b"") == 4000
    with pytest.raises(ComponentError, match="maxResponseBodySize"):
        await call(server.url, m_path=f"{kind}/5000", maxResponseBodySize="4000")


async def test_max_response_body_size_accepts_kubernetes_quantities(server: Server):
    resp = await call(server.url, m_path="big/3000", maxResponseBodySize="3Ki")
    assert len(resp.data or b"") == 3000
    with pytest.raises(ComponentError, match="maxResponseBodySize"):
        await call(server.url, m_path="big/2000", maxResponseBodySize="1k")


async def test_head_of_a_large_resource_is_not_refused_for_its_announced_length(server: Server):
    resp = await call(server.url, "head", m_path="big/5000", maxResponseBodySize="100")
    assert resp.metadata["Content-Length"] == "5000"
    assert resp.data == b""


# -- failures -------------------------------------------------------------------------------
async def test_connection_refused_names_the_host_and_never_the_token():
    # A bound socket that never listens refuses connections, and no one else can take it.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(ComponentError) as info:
            await call(
                f"http://127.0.0.1:{port}",
                securityToken=TOKEN,
                securityTokenHeader="Authorization",
            )
    assert f"127.0.0.1:{port}" in str(info.value)
    assert TOKEN not in str(info.value)


async def test_response_timeout_fails_the_call(server: Server):
    with pytest.raises(ComponentError, match=r"timed out after 0\.2s") as info:
        await call(
            server.url,
            m_path="slow",
            responseTimeout="200ms",
            securityToken=TOKEN,
            securityTokenHeader="X-Token",
        )
    assert TOKEN not in str(info.value)


async def test_unknown_operation_is_unsupported(server: Server):
    async with binding(url=server.url) as b:
        assert isinstance(b, OutputBinding)
        assert set(b.operations()) == {
            "create",
            "get",
            "head",
            "post",
            "put",
            "patch",
            "delete",
            "options",
            "trace",
        }
        with pytest.raises(UnsupportedOperationError):
            await b.invoke(InvokeRequest("connect"))
    assert server.seen == []


# -- redirects -------------------------------------------------------------------------------
async def test_redirect_within_the_origin_keeps_the_verb_body_and_token(server: Server):
    resp = await call(
        server.url,
        "put",
        b"payload",
        m_path="redirect-same",
        securityToken=TOKEN,
        securityTokenHeader="X-Token",
    )
    landed = server.last
    assert (landed.method, landed.path, landed.body) == ("PUT", "/landed", b"payload")
    assert landed.headers["X-Token"] == TOKEN
    assert resp.data == b"echo:payload"


async def test_see_other_redirect_becomes_a_get_without_body(server: Server):
    await call(server.url, "post", b"payload", m_path="redirect-see-other")
    assert (server.last.method, server.last.path, server.last.body) == ("GET", "/landed", b"")


async def test_redirect_to_another_origin_drops_the_security_token():
    async with serve() as elsewhere, serve(other=elsewhere) as origin:
        resp = await call(
            origin.url,
            m_path="redirect-other",
            securityToken=TOKEN,
            securityTokenHeader="X-Token",
            **{"m_Authorization": "Bearer app-credential"},
        )
    assert origin.last.headers["X-Token"] == TOKEN
    assert elsewhere.last.path == "/landed"
    assert "X-Token" not in elsewhere.last.headers
    assert "Authorization" not in elsewhere.last.headers
    assert resp.metadata["statusCode"] == "200"


async def test_endless_redirects_fail(server: Server):
    with pytest.raises(ComponentError, match="redirects"):
        await call(server.url, m_path="redirect-loop")


# -- TLS ---------------------------------------------------------------------------------------
@dataclass
class PKI:
    ca_pem: str
    server_cert: Path
    server_key: Path
    client_cert_pem: str
    client_key_pem: str


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    usage: ExtendedKeyUsageOID | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if issuer is None:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("daprlite test CA", ca_key, None, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("127.0.0.1", server_key, ca, ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue("app", client_key, ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    folder = tmp_path_factory.mktemp("pki")
    (folder / "server.pem").write_text(_pem(server_cert) + _pem(ca))
    (folder / "server.key").write_text(_key_pem(server_key))
    return PKI(
        _pem(ca),
        folder / "server.pem",
        folder / "server.key",
        _pem(client_cert),
        _key_pem(client_key),
    )


def _server_tls(pki: PKI, *, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=pki.ca_pem)
    return ctx


async def test_https_server_with_an_unknown_ca_is_refused(pki: PKI):
    async with serve(_server_tls(pki)) as https:
        with pytest.raises(ComponentError, match=r"(?i)certificate") as info:
            await call(https.url, m_path="secure")
    assert https.url.removeprefix("https://") in str(info.value)
    assert https.seen == []


async def test_https_server_is_accepted_with_its_root_ca_as_pem_text(pki: PKI):
    async with serve(_server_tls(pki)) as https:
        resp = await call(https.url, "create", b"{}", m_path="secure", MTLSRootCA=pki.ca_pem)
    assert resp.metadata["statusCode"] == "200"
    assert https.last.path == "/secure"


async def test_https_root_ca_may_be_a_file_path(pki: PKI, tmp_path: Path):
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text(pki.ca_pem)
    async with serve(_server_tls(pki)) as https:
        resp = await call(https.url, MTLSRootCA=str(ca_file), MTLSRenegotiation="RenegotiateNever")
    assert resp.metadata["statusCode"] == "200"


async def test_insecure_skip_tls_verify_accepts_an_unknown_ca(pki: PKI):
    async with serve(_server_tls(pki)) as https:
        resp = await call(https.url, insecureSkipTLSVerify="true")
    assert resp.metadata["statusCode"] == "200"


async def test_mutual_tls_client_certificate_is_presented(pki: PKI):
    async with serve(_server_tls(pki, require_client_cert=True)) as https:
        with pytest.raises(ComponentError):
            await call(https.url, m_path="without", MTLSRootCA=pki.ca_pem)
        resp = await call(
            https.url,
            m_path="with",
            MTLSRootCA=pki.ca_pem,
            MTLSClientCert=pki.client_cert_pem,
            MTLSClientKey=pki.client_key_pem,
        )
    assert resp.metadata["statusCode"] == "200"
    assert [s.path for s in https.seen] == ["/with"]


# -- component metadata ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("props", "field_name"),
    [
        ({}, "url"),
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://x", "securityToken": TOKEN}, "securityTokenHeader"),
        ({"url": "http://x", "maxResponseBodySize": "lots"}, "maxResponseBodySize"),
        ({"url": "http://x", "responseTimeout": "soon"}, "responseTimeout"),
        ({"url": "http://x", "responseTimeout": "-1s"}, "responseTimeout"),
        ({"url": "http://x", "MTLSClientCert": "-----BEGIN CERTIFICATE-----"}, "MTLSClientKey"),
        ({"url": "https://x", "MTLSRootCA": "/no/such/ca.pem"}, "MTLSRootCA"),
        ({"url": "https://x", "MTLSRenegotiation": "sometimes"}, "MTLSRenegotiation"),
        ({"url": "https://x", "errorIfNot2XX": "maybe"}, "errorIfNot2XX"),
    ],
)
async def test_bad_component_metadata_is_refused_naming_the_field(
    props: dict[str, str], field_name: str
):
    b = HTTPBinding()
    with pytest.raises(MetadataError) as info:
        await b.init(ComponentMetadata(name="web", type="bindings.http", properties=props))
    assert info.value.field == field_name
    assert TOKEN not in str(info.value)


async def test_bad_client_certificate_is_refused_without_echoing_the_key(pki: PKI):
    b = HTTPBinding()
    bogus_key = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    props = {"url": "https://x", "MTLSClientCert": pki.client_cert_pem, "MTLSClientKey": bogus_key}
    with pytest.raises(MetadataError) as info:
        await b.init(ComponentMetadata(name="web", type="bindings.http", properties=props))
    assert info.value.field == "MTLSClientCert"
    assert "bm90IGEga2V5" not in str(info.value)


async def test_settings_never_show_the_token_or_the_client_key(pki: PKI):
    async with binding(
        url="https://x",
        securityToken=TOKEN,
        securityTokenHeader="X-Token",
        MTLSClientCert=pki.client_cert_pem,
        MTLSClientKey=pki.client_key_pem,
    ) as b:
        shown = repr(b.settings)
    assert TOKEN not in shown
    assert "PRIVATE KEY" not in shown
    assert "X-Token" in shown


def test_registry_resolves_bindings_http():
    assert Registry().resolve("bindings.http") is HTTPBinding
