"""daprlite-client: gRPC stubs and small async state and auth clients for daprlite.

This package sits on the application side of the app-to-sidecar gRPC API. The
stubs under ``daprlite_client._proto`` are generated from daprlite's own
``proto/`` files by ``scripts/gen_proto.py``; they are wire-compatible with
Dapr, so the same calls work against a real ``daprd`` too. They register their
descriptors in a private pool, so this package can be imported next to the
official ``dapr`` SDK.
"""

from __future__ import annotations

from daprlite_client.auth import AuthCallError, AuthClient, AuthRefused, Session
from daprlite_client.state import EtagMismatchError, StateClient, StateError

__version__ = "0.1.0"

__all__ = [
    "AuthCallError",
    "AuthClient",
    "AuthRefused",
    "EtagMismatchError",
    "Session",
    "StateClient",
    "StateError",
    "__version__",
]
