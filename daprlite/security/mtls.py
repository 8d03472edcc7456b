"""mTLS between sidecars: this sidecar's workload identity, its TLS contexts, rotation.

Sits under the internal transport (:mod:`daprlite.transport.internal`): the
internal listener serves with :attr:`WorkloadIdentity.server_context` and
requires a client certificate from the same trust anchors; the internal
client dials with :attr:`WorkloadIdentity.client_context`. The caller's
identity for access control is read from the peer certificate's SPIFFE ID
(:func:`peer_identity`), never from a header.

Certificates come from a :class:`CertificateSource` — the local CA created
by ``daprlite init`` on a laptop — and are renewed in place once 70% of
their lifetime has passed: the contexts load the new chain, so new
connections use it while open ones finish on the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc

from daprlite.components.metadata import parse_duration
from daprlite.config.resources import Resource, ResourceError
from daprlite.security.acl import Identity
from daprlite.security.ca import CAError, IssuedCertificate, load_ca

log = logging.getLogger("daprlite.security.mtls")

_SPIFFE = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/([^/]+)$")
RENEW_AT = 0.7  # share of a certificate's lifetime after which it is renewed
DEFAULT_TTL = dt.timedelta(hours=24)
DEFAULT_SKEW = dt.timedelta(minutes=15)


class MTLSError(Exception):
    """mTLS was asked for but cannot be set up (no CA, no certificate)."""


def spiffe_id(trust_domain: str, namespace: str, app_id: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace or 'default'}/{app_id}"


def dns_name(app_id: str, namespace: str) -> str:
    """The DNS SAN of a workload certificate, which callers verify as the TLS host name.

    The client side checks the callee's identity this way, during the handshake
    (OpenSSL's host-name check), before any byte of the request is sent.
    """
    return f"{app_id}.{namespace or 'default'}.daprlite".lower()


def parse_spiffe_id(uri: str) -> Identity | None:
    m = _SPIFFE.match(uri)
    return None if m is None else Identity(m.group(1), m.group(2), m.group(3))


def peer_identity(peercert: Mapping[str, object] | None) -> Identity | None:
    """The SPIFFE identity in a verified peer certificate (``SSLSocket.getpeercert()``)."""
    if not peercert:
        return None
    sans = peercert.get("subjectAltName") or ()
    uris = [v for k, v in sans if k == "URI"] if isinstance(sans, tuple) else []  # type: ignore[misc]
    # An X.509-SVID carries exactly one URI SAN; anything else is not an identity.
    if len(uris) != 1 or not isinstance(uris[0], str):
        return None
    return parse_spiffe_id(uris[0])


class CertificateSource(Protocol):
    async def issue(self, spiffe: str, ttl: dt.timedelta, skew: dt.timedelta) -> IssuedCertificate:
        """A fresh workload certificate (and the trust anchors) for ``spiffe``."""
        ...


class LocalCASource:
    """Issues from the CA files in a folder (``daprlite init``); read anew at each renewal."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def issue(self, spiffe: str, ttl: dt.timedelta, skew: dt.timedelta) -> IssuedCertificate:
        who = parse_spiffe_id(spiffe)
        names = (dns_name(who.app_id, who.namespace),) if who is not None else ()

        def sign() -> IssuedCertificate:
            return load_ca(self.folder).issue_pem(spiffe, ttl, skew, names)

        return await asyncio.to_thread(sign)


@dataclass(frozen=True, slots=True)
class MTLSSpec:
    """Configuration ``spec.mtls``: the parts a sidecar acts on."""

    enabled: bool | None = None  # None: on when a CA is available
    workload_cert_ttl: dt.timedelta = DEFAULT_TTL
    allowed_clock_skew: dt.timedelta = DEFAULT_SKEW


class WorkloadIdentity:
    """This sidecar's certificate and the TLS contexts that use it."""

    def __init__(
        self,
        identity: Identity,
        source: CertificateSource,
        spec: MTLSSpec | None = None,
    ) -> None:
        self.identity = identity
        self.spiffe_id = spiffe_id(identity.trust_domain, identity.namespace, identity.app_id)
        self._source = source
        self._spec = spec or MTLSSpec()
        # Plain contexts, not ssl.create_default_context(): that one also trusts the
        # system's CA store, and only this identity's trust anchors may vouch for a peer.
        self.server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_context.verify_mode = ssl.CERT_REQUIRED
        self.client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED
        # The callee's certificate must carry dns_name(callee): callers pass it as the
        # TLS server name (aiohttp's server_hostname), whatever address they dial.
        self.client_context.check_hostname = True
        for ctx in (self.server_context, self.client_context):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self._anchors: set[bytes] = set()
        self.current: IssuedCertificate | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def trust_bundle_pem(self) -> bytes:
        """Every trust anchor seen so far (old and new CA during a rotation), as one PEM."""
        return b"".join(sorted(self._anchors))

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials that follow this identity's renewals, client cert required."""
        served: list[IssuedCertificate | None] = [None]

        def config() -> grpc.ServerCertificateConfiguration:
            cert = self.current
            assert cert is not None
            served[0] = cert
            return grpc.ssl_server_certificate_configuration(
                [(cert.key_pem, cert.cert_pem)], root_certificates=self.trust_bundle_pem
            )

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Called by gRPC before each handshake; None keeps the current configuration.
            return config() if self.current is not served[0] else None

        return grpc.dynamic_ssl_server_credentials(
            config(), fetch, require_client_authentication=True
        )

    async def start(self) -> None:
        """Get the first certificate (raising if that fails) and start renewing."""
        self._install(await self._issue())
        self._task = asyncio.create_task(self._renew_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _issue(self) -> IssuedCertificate:
        return await self._source.issue(
            self.spiffe_id, self._spec.workload_cert_ttl, self._spec.allowed_clock_skew
        )

    def _install(self, cert: IssuedCertificate) -> None:
        # Trust anchors are only ever added: during a CA rotation peers holding
        # certificates from the old and the new CA must both be accepted.
        if cert.trust_anchors_pem not in self._anchors:
            for ctx in (self.server_context, self.client_context):
                ctx.load_verify_locations(cadata=cert.trust_anchors_pem.decode())
            self._anchors.add(cert.trust_anchors_pem)
        with tempfile.TemporaryDirectory(prefix="daprlite-mtls-") as tmp:
            cert_path, key_path = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_path.write_bytes(cert.cert_pem)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(cert.key_pem)
            for ctx in (self.server_context, self.client_context):
                ctx.load_cert_chain(cert_path, key_path)
        self.current = cert
        log.info(
            "workload certificate for %s installed, valid until %s",
            self.spiffe_id,
            cert.not_after.isoformat(timespec="seconds"),
        )

    def _renew_in(self) -> float:
        assert self.current is not None
        issued = self.current.not_before + self._spec.allowed_clock_skew
        lifetime = (self.current.not_after - issued).total_seconds()
        due = issued + dt.timedelta(seconds=max(lifetime, 0.0) * RENEW_AT)
        # Certificate times have whole seconds; the floor keeps a tiny TTL from spinning.
        return max((due - dt.datetime.now(dt.UTC)).total_seconds(), 0.5)

    async def _renew_loop(self) -> None:
        backoff = 1.0
        while True:
            await asyncio.sleep(self._renew_in())
            try:
                self._install(await self._issue())
                backoff = 1.0
            except (CAError, OSError, ssl.SSLError, ValueError) as exc:
                assert self.current is not None
                left = (self.current.not_after - dt.datetime.now(dt.UTC)).total_seconds()
                log.warning(
                    "renewing the workload certificate failed (%s); retrying in %.0fs, "
                    "the current one is valid for %.0fs more",
                    exc,
                    backoff,
                    left,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


def _duration(raw: object, res: Resource, where: str, default: dt.timedelta) -> dt.timedelta:
    if raw is None or raw == "":
        return default
    try:
        seconds = parse_duration(str(raw))
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ResourceError(
            res.source,
            f"Configuration {res.name!r}",
            where,
            f"expected a positive duration such as '24h' or '90s', got {raw!r}",
        )
    return dt.timedelta(seconds=seconds)


def parse_mtls(res: Resource) -> MTLSSpec | None:
    """``spec.mtls`` of one Configuration document, or None when absent."""
    raw = res.spec.get("mtls")
    if raw is None:
        return None
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, "spec.mtls", "expected a mapping")
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ResourceError(res.source, label, "spec.mtls.enabled", "expected true or false")
    return MTLSSpec(
        enabled=enabled,
        workload_cert_ttl=_duration(
            raw.get("workloadCertTTL"), res, "spec.mtls.workloadCertTTL", DEFAULT_TTL
        ),
        allowed_clock_skew=_duration(
            raw.get("allowedClockSkew"), res, "spec.mtls.allowedClockSkew", DEFAULT_SKEW
        ),
    )
