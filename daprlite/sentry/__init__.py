"""``daprlite sentry``: the certificate authority of sidecars on Kubernetes.

A sidecar proves who it is with its projected service-account token; the
sentry checks that token with the TokenReview API, checks that the pod it
names carries the app id asked for, and signs the sidecar's CSR as
``spiffe://<trustDomain>/ns/<namespace>/<appId>``. The CA lives in the Secret
:data:`TRUST_BUNDLE_SECRET` of the sentry's namespace.
"""

from __future__ import annotations

from daprlite.sentry.bundle import TRUST_BUNDLE_SECRET, TrustBundleError, load_or_create_ca
from daprlite.sentry.identity import (
    AUDIENCE,
    CallerCheckError,
    Forbidden,
    Unauthenticated,
    verify_caller,
)
from daprlite.sentry.server import SentryOptions, serve

__all__ = [
    "AUDIENCE",
    "TRUST_BUNDLE_SECRET",
    "CallerCheckError",
    "Forbidden",
    "SentryOptions",
    "TrustBundleError",
    "Unauthenticated",
    "load_or_create_ca",
    "serve",
    "verify_caller",
]
