"""TLS material shared by the components: PEM text or files, loaded without leaking.

Dapr's component metadata carries certificates and keys either as PEM text or
as paths to PEM files. Python's ssl module loads a key pair only from files,
so PEM text goes to a private temporary folder for the moment of loading, and
error messages name the field, never the PEM text. Blocking: call from a thread.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daprlite.components.errors import MetadataError


def is_pem(value: str) -> bool:
    return value.lstrip().startswith("-----BEGIN")


@contextmanager
def pem_file(field: str, value: str) -> Iterator[str]:
    """A path holding ``value``: PEM text is written to a private temporary file, removed after."""
    if not is_pem(value):
        yield value  # already a path to a PEM file
        return
    with tempfile.TemporaryDirectory(prefix="daprlite-tls-") as tmp:  # mode 0700
        path = Path(tmp) / field
        path.write_text(value)
        yield str(path)


def load_client_cert(
    ctx: ssl.SSLContext, cert_field: str, cert: str, key_field: str, key: str
) -> None:
    """Load a client certificate and key into ``ctx``; MetadataError names ``cert_field``."""
    try:
        with pem_file(cert_field, cert) as cert_path, pem_file(key_field, key) as key_path:
            ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise MetadataError(
            cert_field, f"cannot load the client certificate and key: {exc}"
        ) from exc
