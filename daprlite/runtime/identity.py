"""Start-up step 6, before the listeners: this sidecar's workload identity for mTLS.

Decides whether mTLS is on (``--enable-mtls``, then the Configuration's
``spec.mtls.enabled``, then whether a certificate authority is at hand: a
``daprlite sentry`` address on Kubernetes, or the local CA that ``daprlite
init`` made) and, when it is, gets the first certificate. The sidecar then
serves its internal port and dials other sidecars with the identity's TLS
contexts.
"""

from __future__ import annotations

import logging
import os

from daprlite.config.configuration import Configuration
from daprlite.config.options import Options, daprlite_home
from daprlite.security.acl import DEFAULT_TRUST_DOMAIN, Identity
from daprlite.security.ca import CAError, ca_exists
from daprlite.security.mtls import CertificateSource, LocalCASource, MTLSError, WorkloadIdentity
from daprlite.security.sentry_client import SentrySource
from daprlite.security.sentry_client import settings_from_env as sentry_settings_from_env

log = logging.getLogger("daprlite.runtime")


def trust_domain_of(config: Configuration) -> str:
    """The Configuration's ``accessControl.trustDomain``, else the injector's setting."""
    return (
        config.access_control.trust_domain
        or os.environ.get("DAPRLITE_TRUST_DOMAIN", "")
        or DEFAULT_TRUST_DOMAIN
    )


async def open_identity(opts: Options, config: Configuration) -> WorkloadIdentity | None:
    """The started workload identity, or None when mTLS is off; MTLSError if it cannot be had."""
    certs = daprlite_home() / "certs"
    enabled = opts.enable_mtls
    if enabled is None:
        # A sentry to ask is as good as a local CA (on Kubernetes, the injector sets both).
        available = bool(opts.sentry_address) or ca_exists(certs)
        enabled = config.mtls.enabled is not False and available
    if not enabled:
        log.info("mTLS between sidecars is off")
        return None
    source: CertificateSource
    if opts.sentry_address:
        source = SentrySource(sentry_settings_from_env(opts.sentry_address))
    elif ca_exists(certs):
        source = LocalCASource(certs)
    else:
        raise MTLSError(
            f"--enable-mtls needs a certificate authority, and {certs} holds none: "
            "run 'daprlite init' first (or pass --sentry-address)"
        )
    identity = WorkloadIdentity(
        Identity(trust_domain_of(config), opts.namespace or "default", opts.app_id),
        source,
        config.mtls,
    )
    try:
        await identity.start()
    except CAError as exc:
        raise MTLSError(str(exc)) from exc
    log.info("mTLS between sidecars is on; this sidecar is %s", identity.spiffe_id)
    return identity
