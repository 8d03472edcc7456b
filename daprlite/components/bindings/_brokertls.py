"""TLS settings shared by the message-broker bindings (``bindings.mqtt3``, ``bindings.rabbitmq``).

Both take Dapr's ``caCert`` / ``clientCert`` / ``clientKey`` metadata and turn
it into one :class:`ssl.SSLContext` at init, which the driver then uses for
every (re)connection. Values are PEM text, as in Dapr, or paths to PEM files.
Building the context reads files, so callers run :func:`client_tls_context`
in a thread.
"""

from __future__ import annotations

import ssl

from daprlite.components._tls import is_pem, load_client_cert
from daprlite.components.errors import MetadataError


def client_tls_context(*, ca_cert: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    """A verifying client context: the system CAs (or ``ca_cert``) and an optional client key.

    Raises MetadataError naming the field that could not be loaded; the
    message never contains the PEM text.
    """
    ctx = ssl.create_default_context()
    if ca_cert:
        try:
            if is_pem(ca_cert):
                ctx.load_verify_locations(cadata=ca_cert)
            else:
                ctx.load_verify_locations(cafile=ca_cert)
        except (OSError, ssl.SSLError) as exc:
            raise MetadataError("caCert", f"cannot load the CA certificate: {exc}") from exc
    if bool(client_cert) != bool(client_key):
        missing = "clientKey" if client_cert else "clientCert"
        raise MetadataError(missing, "is required when the other of clientCert/clientKey is set")
    if client_cert:
        load_client_cert(ctx, "clientCert", client_cert, "clientKey", client_key)
    return ctx
