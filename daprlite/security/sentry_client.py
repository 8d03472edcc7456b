"""Workload certificates from ``daprlite sentry``: the sidecar's side on Kubernetes.

A :class:`CertificateSource` for :class:`daprlite.security.mtls.WorkloadIdentity`,
chosen by ``_start_mtls`` when ``--sentry-address`` is set (the injector sets it).
Each issue — at start-up and at every renewal — makes a new EC key and a CSR,
reads the projected service-account token from ``DAPRLITE_SENTRY_TOKEN_FILE``
anew (the kubelet rotates it) and posts both, with the namespace, app id and
trust domain of the identity asked for, to ``https://<address>/v1/sign``,
verifying the sentry against the trust anchors from ``DAPR_TRUST_ANCHORS``
with the address's host as the TLS server name. The private key never leaves
the process; the token is never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from daprlite.security.ca import CAError, IssuedCertificate
from daprlite.security.mtls import MTLSError, parse_spiffe_id

TRUST_ANCHORS_ENV = "DAPR_TRUST_ANCHORS"
TOKEN_FILE_ENV = "DAPRLITE_SENTRY_TOKEN_FILE"
_TIMEOUT = aiohttp.ClientTimeout(total=15)


class SentryError(CAError):
    """The sentry could not be reached, refused to sign, or answered something unusable.

    A :class:`CAError`, so a failed renewal is retried like a local CA's.
    """


@dataclass(frozen=True, slots=True)
class SentrySettings:
    address: str  # host:port of daprlite sentry
    trust_anchors_pem: bytes
    token_file: Path


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port); raises ValueError naming the flag."""
    host, sep, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--sentry-address: expected host:port, got {address!r}")
    return host, int(port)


def settings_from_env(address: str) -> SentrySettings:
    """Settings for ``address`` from the environment; :class:`MTLSError` names what is missing."""
    try:
        split_address(address)
    except ValueError as exc:
        raise MTLSError(str(exc)) from None
    anchors = os.environ.get(TRUST_ANCHORS_ENV, "").strip()
    if "-----BEGIN CERTIFICATE-----" not in anchors:
        raise MTLSError(
            f"--sentry-address {address} needs the sentry's CA certificate(s) as PEM in "
            f"${TRUST_ANCHORS_ENV} (the injector sets it); it is "
            f"{'not PEM' if anchors else 'not set'}"
        )
    token_file = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not token_file:
        raise MTLSError(
            f"--sentry-address {address} needs ${TOKEN_FILE_ENV}: the path of the projected "
            "service-account token (audience daprlite-sentry) the injector mounts"
        )
    path = Path(token_file)
    if not path.is_file():
        raise MTLSError(f"${TOKEN_FILE_ENV}={token_file}: no such file (is the token mounted?)")
    return SentrySettings(address.strip(), anchors.encode(), path)


class SentrySource:
    """Asks ``daprlite sentry`` to sign a fresh key for this sidecar's SPIFFE ID."""

    def __init__(self, settings: SentrySettings) -> None:
        self.settings = settings
        self._host, self._port = split_address(settings.address)
        self._tls = ssl.create_default_context(cadata=settings.trust_anchors_pem.decode())
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}/v1/sign"

    def _token(self) -> str:
        try:
            token = self.settings.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SentryError(
                f"cannot read the service-account token {self.settings.token_file}: {exc.strerror}"
            ) from None
        if not token:
            raise SentryError(f"the service-account token file {self.settings.token_file} is empty")
        return token

    async def issue(self, spiffe: str, ttl: dt.timedelta, skew: dt.timedelta) -> IssuedCertificate:
        # The sentry decides the lifetime (its --workload-cert-ttl); ttl and skew are the
        # local CA's knobs and are not sent.
        who = parse_spiffe_id(spiffe)
        if who is None:
            raise SentryError(f"{spiffe!r} is not a SPIFFE ID of the form spiffe://td/ns/NS/APP")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        body = {
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "token": self._token(),
            "namespace": who.namespace,
            "appId": who.app_id,
            # The trust domain is the app's choice (its Configuration, else the injector's
            # DAPRLITE_TRUST_DOMAIN); the sentry proves only the namespace and app id.
            "trustDomain": who.trust_domain,
        }
        reply = await self._post(body)
        return self._issued(reply, key, spiffe)

    async def _post(self, body: dict[str, str]) -> dict[str, object]:
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.post(
                    self.url, json=body, ssl=self._tls, server_hostname=self._host
                ) as resp,
            ):
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SentryError(f"cannot reach the sentry at {self.url}: {exc}") from None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if status != 200:
            detail = (
                f"{doc.get('errorCode')}: {doc.get('message')}"
                if isinstance(doc, dict)
                else raw[:200].decode("utf-8", "replace")
            )
            raise SentryError(f"the sentry at {self.url} refused to sign (HTTP {status}): {detail}")
        if not isinstance(doc, dict):
            raise SentryError(f"the sentry at {self.url} answered something other than JSON")
        return doc

    def _issued(
        self, reply: dict[str, object], key: ec.EllipticCurvePrivateKey, spiffe: str
    ) -> IssuedCertificate:
        cert_pem, anchors = reply.get("certificate"), reply.get("trustAnchors")
        if not isinstance(cert_pem, str) or not isinstance(anchors, str):
            raise SentryError(f"the sentry at {self.url} answered without certificate/trustAnchors")
        try:
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            uris = cert.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.UniformResourceIdentifier)
        except (ValueError, x509.ExtensionNotFound) as exc:
            raise SentryError(f"the sentry's certificate does not parse: {exc}") from None
        # Never install a certificate for another identity or another key.
        if uris != [spiffe]:
            raise SentryError(f"the sentry issued a certificate for {uris}, not for {spiffe}")
        if cert.public_key() != key.public_key():
            raise SentryError("the sentry's certificate is not for the key this sidecar sent")
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            trust_anchors_pem=anchors.encode(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )
