"""The certificate authority behind mTLS between sidecars.

On a laptop, ``daprlite init`` creates a CA under ``$DAPRLITE_HOME/certs``
(``ca.crt``, and ``ca.key`` readable by its owner only). Each sidecar then
issues itself a short-lived workload certificate from it, whose only URI
SAN is its SPIFFE ID ``spiffe://<trustDomain>/ns/<namespace>/<appId>``. On
Kubernetes the same issuing runs in ``daprlite sentry`` instead, which
checks the sidecar's service-account token first.

Keys are ECDSA P-256. Certificates start ``allowed_clock_skew`` in the past
so that a peer whose clock is a little behind still accepts them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
CA_LIFETIME = dt.timedelta(days=365)


class CAError(Exception):
    """The CA files are missing, unreadable or do not belong together."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    cert_pem: bytes  # the workload certificate
    key_pem: bytes  # its private key (PKCS#8, unencrypted: it never leaves the process)
    trust_anchors_pem: bytes  # the CA certificate(s) peers are checked against
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA certificate and its key: signs workload (and serving) certificates."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        spiffe_id: str,
        ttl: dt.timedelta,
        allowed_clock_skew: dt.timedelta = dt.timedelta(minutes=15),
        dns_names: tuple[str, ...] = (),
        public_key: ec.EllipticCurvePublicKey | None = None,
        ip_addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | None]:
        """A workload certificate for ``spiffe_id``.

        With ``public_key`` (from a CSR) no key is made; otherwise a new key
        is generated and returned with the certificate.
        """
        key = None
        if public_key is None:
            key = ec.generate_private_key(ec.SECP256R1())
            public_key = key.public_key()
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + ttl, self.cert.not_valid_after_utc)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id)]
        sans += [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(ip) for ip in ip_addresses]  # serving certificates only
        cert = (
            x509.CertificateBuilder()
            # SPIFFE X.509-SVIDs carry the identity in the URI SAN; the subject stays empty.
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - allowed_clock_skew)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return cert, key

    def issue_pem(
        self,
        spiffe_id: str,
        ttl: dt.timedelta,
        allowed_clock_skew: dt.timedelta = dt.timedelta(minutes=15),
        dns_names: tuple[str, ...] = (),
    ) -> IssuedCertificate:
        cert, key = self.issue(spiffe_id, ttl, allowed_clock_skew, dns_names)
        assert key is not None
        return IssuedCertificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            trust_anchors_pem=self.cert_pem,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )


def create_ca(common_name: str = "daprlite local CA") -> CertificateAuthority:
    """A new self-signed CA (EC P-256, one year), allowed to sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "daprlite"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=15))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


def write_ca(ca: CertificateAuthority, folder: Path) -> None:
    """Write ``ca.crt`` and ``ca.key`` (mode 0600) into ``folder`` (mode 0700)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    key_path = folder / CA_KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            ca.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    (folder / CA_CERT_FILE).write_bytes(ca.cert_pem)


def ca_exists(folder: Path) -> bool:
    return (folder / CA_CERT_FILE).is_file() and (folder / CA_KEY_FILE).is_file()


def load_ca(folder: Path) -> CertificateAuthority:
    """The CA in ``folder``; CAError if its files are missing, mismatched or expired."""
    try:
        cert = x509.load_pem_x509_certificate((folder / CA_CERT_FILE).read_bytes())
        key = serialization.load_pem_private_key((folder / CA_KEY_FILE).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise CAError(f"cannot load the CA from {folder}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAError(f"{folder / CA_KEY_FILE} is not an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise CAError(f"{folder / CA_KEY_FILE} does not belong to {folder / CA_CERT_FILE}")
    if cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        raise CAError(
            f"the CA certificate {folder / CA_CERT_FILE} expired on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}; run 'daprlite init --renew-ca'"
        )
    return CertificateAuthority(cert, key)
