"""daprlite: a Dapr-compatible building-block sidecar.

This package is the sidecar itself. Transports (``daprlite.transport``) parse
requests and hand them to transport-neutral blocks (``daprlite.blocks``), which
talk to pluggable components (``daprlite.components``) through small Protocols.
"""

from __future__ import annotations

__version__ = "0.1.0"

# The Dapr runtime version we answer as, so SDK feature checks behave.
DAPR_RUNTIME_VERSION = "1.15.0"

__all__ = ["DAPR_RUNTIME_VERSION", "__version__"]
