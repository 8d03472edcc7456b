"""The sentry's HTTPS endpoint: ``POST /v1/sign`` turns a sidecar's CSR into its certificate.

A sidecar on Kubernetes (``--sentry-address``, :mod:`daprlite.security.sentry_client`)
calls it at start-up and before each renewal. The handler only parses the
request, lets :mod:`daprlite.sentry.identity` check the caller, signs with the
CA from :mod:`daprlite.sentry.bundle` and shapes the answer. Malformed input is
a 400 naming the field, a token the API server does not accept a 401, a token
that does not prove the namespace or app id a 403 — each an ``{errorCode,
message}`` body from the error catalogue. The sentry serves a certificate it
issues itself from the same CA (so sidecars verify it with the trust anchors
they were given), renewed in place, unless ``--tls-cert-file`` supplies one.

The SPIFFE ID issued is ``spiffe://<trustDomain>/ns/<namespace>/<appId>``. The
namespace and app id must be proven (by the token and its pod); the trust domain
is not an identity claim but the app owner's choice, as in Dapr, where it comes
from the app's Configuration (``accessControl.trustDomain``). So a request may
name its ``trustDomain`` (checked only for shape), and without one the sentry's
``--trust-domain`` (default ``public``, Dapr's default) is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes_asyncio.client import ApiClient

from daprlite import errors
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest
from daprlite.components.middleware.ratelimit import RateLimitMiddleware
from daprlite.injector.annotations import (
    APP_ID_MAX,
    TRUST_DOMAIN_MAX,
    is_valid_app_id,
    is_valid_trust_domain,
)
from daprlite.security.acl import DEFAULT_TRUST_DOMAIN
from daprlite.security.ca import CertificateAuthority
from daprlite.security.mtls import dns_name, spiffe_id
from daprlite.sentry.bundle import TRUST_BUNDLE_SECRET, load_or_create_ca
from daprlite.sentry.identity import (
    AUDIENCE,
    APIUnavailable,
    Forbidden,
    Unauthenticated,
    verify_caller,
)

log = logging.getLogger("daprlite.sentry")

SERVICE_NAME = "daprlite-sentry"
MAX_BODY = 64 * 1024  # a CSR and a token are a few KiB
SERVING_TTL = dt.timedelta(hours=24)
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class SentryOptions:
    """The ``daprlite sentry`` flags."""

    port: int = 8443
    listen_address: str = "0.0.0.0"
    namespace: str = "daprlite-system"  # where the sentry runs and its CA Secret lives
    trust_domain: str = DEFAULT_TRUST_DOMAIN  # for requests that do not name one
    workload_cert_ttl: dt.timedelta = dt.timedelta(hours=24)
    allowed_clock_skew: dt.timedelta = dt.timedelta(minutes=15)
    tls_cert_file: Path | None = None  # None: serve a certificate issued from the CA
    tls_key_file: Path | None = None
    trust_bundle_file: Path | None = None  # where to write ca.crt for the injector, if anywhere
    ca_secret: str = TRUST_BUNDLE_SECRET
    token_audience: str = AUDIENCE
    kubeconfig: str = ""
    # /v1/sign requests per second per client address (each costs a TokenReview); 0: no limit.
    sign_rate: float = 5.0
    sign_burst: int = 20


@dataclass(frozen=True, slots=True)
class SignRequest:
    csr: x509.CertificateSigningRequest
    public_key: ec.EllipticCurvePublicKey
    token: str
    namespace: str
    app_id: str
    trust_domain: str = ""  # empty: the sentry's --trust-domain


class BadSignRequest(ValueError):
    """The body of ``/v1/sign`` is not what it should be; the message names the field."""


@dataclass(frozen=True, slots=True)
class Signer:
    """What the handler needs: the CA, the API client that checks tokens, the policy."""

    ca: CertificateAuthority
    client: ApiClient
    trust_domain: str
    ttl: dt.timedelta
    skew: dt.timedelta
    audience: str = AUDIENCE
    limiter: RateLimitMiddleware | None = None  # per client address, before any API call


SIGNER_KEY = web.AppKey("sentry_signer", Signer)


def _field(body: Mapping[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadSignRequest(f"{name}: expected a non-empty string")
    return value.strip()


# Workload keys: what sidecars make (P-256) and one stronger curve; no exotic curves.
_CURVES = ("secp256r1", "secp384r1")


def parse_sign_request(raw: bytes) -> SignRequest:
    """Check the ``/v1/sign`` body; raises :class:`BadSignRequest` naming the field."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser can follow.
        raise BadSignRequest(f"body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadSignRequest(
            "body: expected a JSON object {csr, token, namespace, appId[, trustDomain]}"
        )
    csr_pem, token = _field(body, "csr"), _field(body, "token")
    namespace, app_id = _field(body, "namespace"), _field(body, "appId")
    if not _NAMESPACE.match(namespace):
        raise BadSignRequest(f"namespace: {namespace[:80]!r} is not a namespace name")
    # The injector's rule: dns_name() lower-cases, so 'Orders' would share 'orders''s name.
    if not is_valid_app_id(app_id):
        raise BadSignRequest(
            f"appId: {app_id[:80]!r} must be lower-case letters, digits and '-', starting and "
            f"ending with a letter or digit (at most {APP_ID_MAX})"
        )
    trust_domain = _trust_domain(body)
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError:
        raise BadSignRequest("csr: not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise BadSignRequest("csr: its signature does not match its public key")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise BadSignRequest(f"csr: expected an EC public key, got {type(public_key).__name__}")
    if public_key.curve.name not in _CURVES:
        raise BadSignRequest(
            f"csr: the key's curve {public_key.curve.name} is not one of {', '.join(_CURVES)}"
        )
    return SignRequest(csr, public_key, token, namespace, app_id, trust_domain)


def _trust_domain(body: Mapping[str, object]) -> str:
    """The optional ``trustDomain`` of a sign request ('' when absent)."""
    value = body.get("trustDomain")
    if value is None:
        return ""
    if not isinstance(value, str) or not is_valid_trust_domain(value):
        shown = value[:80] if isinstance(value, str) else type(value).__name__
        raise BadSignRequest(
            f"trustDomain: {shown!r} must be lower-case letters, digits, '-' and '.', starting "
            f"and ending with a letter or digit (at most {TRUST_DOMAIN_MAX})"
        )
    return value


def _error(entry: errors.CatalogueEntry, message: str) -> web.Response:
    err = entry(message)
    return web.json_response(err.body(), status=err.http_status)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def sign(request: web.Request) -> web.Response:
    signer = request.app[SIGNER_KEY]
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(errors.BODY_TOO_LARGE, f"body: larger than {MAX_BODY} bytes")
    try:
        req = parse_sign_request(raw)
    except BadSignRequest as exc:
        return _error(errors.MALFORMED_REQUEST, str(exc))
    if signer.limiter is not None:
        try:
            await signer.limiter.handle(
                MiddlewareRequest("POST", "/v1/sign", "", (), request.remote or "")
            )
        except MiddlewareRejection as exc:
            err = errors.RATE_LIMITED(exc.message)
            return web.json_response(err.body(), status=err.http_status, headers=dict(exc.headers))
    try:
        caller = await verify_caller(
            signer.client, req.token, req.namespace, req.app_id, signer.audience
        )
    except Unauthenticated as exc:
        log.info("refused a certificate for %s/%s: %s", req.namespace, req.app_id, exc)
        return _error(errors.SENTRY_UNAUTHENTICATED, str(exc))
    except Forbidden as exc:
        log.info("refused a certificate for %s/%s: %s", req.namespace, req.app_id, exc)
        return _error(errors.SENTRY_FORBIDDEN, str(exc))
    except APIUnavailable as exc:
        log.warning("cannot check the caller with the Kubernetes API: %s", exc)
        return _error(errors.SENTRY_UNAVAILABLE, f"cannot check the caller: {exc}")
    identity = spiffe_id(req.trust_domain or signer.trust_domain, req.namespace, req.app_id)
    cert, _ = signer.ca.issue(
        identity,
        signer.ttl,
        signer.skew,
        (dns_name(req.app_id, req.namespace),),
        public_key=req.public_key,
    )
    log.info(
        "issued %s to pod %s/%s, valid until %s",
        identity,
        caller.namespace,
        caller.pod_name,
        _rfc3339(cert.not_valid_after_utc),
    )
    return web.json_response(
        {
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "trustAnchors": signer.ca.cert_pem.decode(),
            "expiresAt": _rfc3339(cert.not_valid_after_utc),
        }
    )


async def trust_bundle(request: web.Request) -> web.Response:
    """The CA certificate (public): what sidecars and the injector trust."""
    pem = request.app[SIGNER_KEY].ca.cert_pem
    return web.Response(body=pem, content_type="application/x-pem-file")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(status=204)


def make_app(signer: Signer) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SIGNER_KEY] = signer
    app.add_routes(
        [
            web.post("/v1/sign", sign),
            web.get("/v1/trust-bundle", trust_bundle),
            web.get("/healthz", healthz),
        ]
    )
    return app


class ServingCertificate:
    """The sentry's own certificate, issued from its CA and renewed before it expires.

    As in the injector, the listening context's SNI callback hands each new
    handshake the newest context, so renewal needs no new listener.
    """

    def __init__(self, ca: CertificateAuthority, namespace: str, trust_domain: str) -> None:
        self._ca = ca
        self._namespace = namespace
        self._trust_domain = trust_domain
        self._current = self._issue()
        self.context = self._issue()
        self.context.sni_callback = self._choose

    def _issue(self) -> ssl.SSLContext:
        names = (
            f"{SERVICE_NAME}.{self._namespace}.svc",
            f"{SERVICE_NAME}.{self._namespace}.svc.cluster.local",
            f"{SERVICE_NAME}.{self._namespace}",
            "localhost",
        )
        cert, key = self._ca.issue(
            spiffe_id(self._trust_domain, self._namespace, SERVICE_NAME),
            SERVING_TTL,
            dns_names=names,
            ip_addresses=(ipaddress.ip_address("127.0.0.1"),),
        )
        assert key is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with tempfile.TemporaryDirectory(prefix="daprlite-sentry-") as tmp:
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_file.touch(mode=0o600)
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            ctx.load_cert_chain(cert_file, key_file)
        return ctx

    def _choose(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        conn.context = self._current

    async def renew_forever(self) -> None:
        while True:
            await asyncio.sleep(SERVING_TTL.total_seconds() * 0.7)
            self._current = self._issue()
            log.info("renewed the sentry's serving certificate")


async def sign_limiter(options: SentryOptions) -> RateLimitMiddleware | None:
    """The ratelimit middleware's token buckets, keyed by client address, for ``/v1/sign``."""
    if options.sign_rate <= 0:
        return None
    limiter = RateLimitMiddleware()
    await limiter.init(
        ComponentMetadata(
            name="sentry /v1/sign",
            type="middleware.http.ratelimit",
            properties={
                "maxRequestsPerSecond": f"{options.sign_rate:g}",
                "burst": str(options.sign_burst),
            },
        )
    )
    return limiter


async def serve(options: SentryOptions, client: ApiClient, stop: asyncio.Event) -> None:
    """Load (or create) the CA, then serve until ``stop`` is set."""
    loaded = await load_or_create_ca(client, options.namespace, options.ca_secret)
    ca = loaded.ca
    if options.trust_bundle_file is not None:
        options.trust_bundle_file.write_bytes(ca.cert_pem)
    signer = Signer(
        ca,
        client,
        options.trust_domain,
        options.workload_cert_ttl,
        options.allowed_clock_skew,
        options.token_audience,
        await sign_limiter(options),
    )
    tasks: list[asyncio.Task[None]] = []
    if options.tls_cert_file is not None and options.tls_key_file is not None:
        from daprlite.injector.server import CertificateReloader

        reloader = CertificateReloader(options.tls_cert_file, options.tls_key_file)
        context = reloader.context
        tasks.append(asyncio.create_task(reloader.watch(2.0)))
    else:
        serving = ServingCertificate(ca, options.namespace, options.trust_domain)
        context = serving.context
        tasks.append(asyncio.create_task(serving.renew_forever()))
    runner = web.AppRunner(make_app(signer), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.listen_address, options.port, ssl_context=context)
        await site.start()
        log.info(
            "sentry listening on https://%s:%d (CA %s, trust domain %s)",
            options.listen_address,
            options.port,
            "generated" if loaded.created else "loaded",
            options.trust_domain,
        )
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
