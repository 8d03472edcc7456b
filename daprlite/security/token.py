"""The Dapr API token (``DAPR_API_TOKEN``): what every API call must present.

With the variable set, every HTTP request needs the header ``dapr-api-token``
and every gRPC call the metadata of the same name, compared in constant time.
Only ``GET`` of the exact health paths stays open — a query string or a path
that merely contains ``/healthz`` does not (Dapr's CVE-2023-37918).
"""

from __future__ import annotations

import hmac
import os

HEADER = "dapr-api-token"
OPEN_PATHS = frozenset({"/v1.0/healthz", "/v1.0/healthz/outbound"})


def api_token_from_env() -> str | None:
    return os.environ.get("DAPR_API_TOKEN") or None


def token_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def is_open(method: str, path: str, query_string: str) -> bool:
    """Health probes need no token: only GET, the exact path, and no query."""
    return method == "GET" and path in OPEN_PATHS and not query_string
