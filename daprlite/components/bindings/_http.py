"""Plumbing behind ``bindings.http``: the TLS context, sizes and header names.

``components/bindings/http.py`` holds the settings and the binding; this
private module holds the pieces that do not depend on them: building the one
SSL context of the connection pool (blocking, so the binding runs it in a
thread at init), parsing Kubernetes-style sizes such as ``100Mi``, and Go's
spelling of header names.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from yarl import URL

from daprlite.components._tls import is_pem, load_client_cert
from daprlite.components.errors import MetadataError

HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?")
_QUANTITY_UNITS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


def parse_quantity(text: str) -> int:
    """Bytes in a Kubernetes quantity (``100Mi``, ``1G``, ``4096``); ValueError otherwise."""
    m = _QUANTITY.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a size such as '100Mi' or '1048576'")
    return int(float(m.group(1)) * _QUANTITY_UNITS[m.group(2)])


def canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey: ``content-type`` -> ``Content-Type``."""
    if not HEADER_NAME.fullmatch(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def origin(url: URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: what must match for credentials to go along."""
    return (url.scheme, (url.host or "").lower(), url.port)


def _pem_text(field: str, value: str) -> str:
    """``value`` if it is PEM text, else the content of the file it names."""
    if is_pem(value):
        return value
    try:
        return Path(value).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(field, f"is neither PEM text nor a readable PEM file: {exc}") from exc


def tls_context(
    *,
    root_ca: str,
    client_cert: str,
    client_key: str,
    skip_verify: bool,
    no_renegotiation: bool,
) -> ssl.SSLContext:
    """The one SSL context of a binding's connection pool. Blocking: run it in a thread.

    Certificates and keys are PEM text, as in Dapr, or paths to PEM files.
    The context keeps what it loaded, so PEM text never stays on disk.
    """
    try:
        # As in Dapr, a root CA replaces the system store rather than adding to it.
        cadata = _pem_text("MTLSRootCA", root_ca) if root_ca else None
        ctx = ssl.create_default_context(cadata=cadata)
    except (ssl.SSLError, ValueError) as exc:
        raise MetadataError("MTLSRootCA", f"cannot load the CA certificate: {exc}") from exc
    if skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if no_renegotiation:
        ctx.options |= ssl.OP_NO_RENEGOTIATION
    if client_cert:
        load_client_cert(ctx, "MTLSClientCert", client_cert, "MTLSClientKey", client_key)
    return ctx
