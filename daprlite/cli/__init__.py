"""The ``daprlite`` command line (``daprlite.cli.main``).

The sidecar starts the app with fork+exec. gRPC's fork handlers exist for
forked Python children that keep using gRPC, which ours never are, and gRPC
logs a warning on every app start while they are on. This must be set before
grpc is imported, hence here; the app does not inherit it
(``cli.run.app_environment``).
"""

from __future__ import annotations

import os

if "GRPC_ENABLE_FORK_SUPPORT" not in os.environ:
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    os.environ["DAPRLITE_GRPC_FORK_SUPPORT_SET"] = "1"
