"""The transport-neutral shape of one invocation, as every hop sees it.

An :class:`InvokeRequest` is built once by the caller's transport (HTTP
route, gRPC ``InvokeService`` or the internal listener), travels to the
callee sidecar unchanged, and is delivered to the app by the app channel.
An :class:`InvokeResponse` travels back the same way. Headers are kept as an
ordered list of pairs, because HTTP allows a name more than once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = tuple[tuple[str, str], ...]

# HTTPExtension.Verb values (common.proto) by name, and back.
VERBS: dict[str, int] = {
    "NONE": 0,
    "GET": 1,
    "HEAD": 2,
    "POST": 3,
    "PUT": 4,
    "DELETE": 5,
    "CONNECT": 6,
    "OPTIONS": 7,
    "TRACE": 8,
    "PATCH": 9,
}
VERB_NAMES = {v: k for k, v in VERBS.items()}

APP_HTTP = "http"
APP_GRPC = "grpc"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: set by the caller's sidecar, never taken from the caller's headers."""

    app_id: str
    namespace: str = ""
    # Set only when the identity was proven: by the peer certificate's SPIFFE ID
    # (mTLS), or because the call never left this sidecar. Access-control
    # policies apply to verified callers only; others get the global default.
    trust_domain: str = ""
    verified: bool = False


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    method: str  # normalised once at the edge; no leading "/"
    verb: str = "POST"  # one of VERBS; "NONE" when a gRPC caller sent no HTTP extension
    query: str = ""  # without the leading "?"
    headers: Headers = ()  # forwarded caller headers / metadata, names lower-case
    body: bytes = b""
    content_type: str = ""
    data_type_url: str = ""  # set when a gRPC caller packed a proto message
    grpc_origin: bool = False  # headers came from gRPC metadata


@dataclass(frozen=True, slots=True)
class InvokeResponse:
    """What the callee app answered.

    For an HTTP app ``status`` is the HTTP status; for a gRPC app it is the
    gRPC status code, with ``grpc_message`` and ``grpc_details`` (a
    serialised ``google.rpc.Status``) when it is not OK.
    """

    app_protocol: str  # APP_HTTP or APP_GRPC
    status: int
    headers: Headers = ()
    body: bytes = b""
    content_type: str = ""
    data_type_url: str = ""
    trailers: Headers = ()
    grpc_message: str = ""
    grpc_details: bytes = field(default=b"", repr=False)

    @property
    def failed(self) -> bool:
        """An error answer: HTTP 4xx/5xx, or any gRPC status but OK."""
        if self.app_protocol == APP_GRPC:
            return self.status != 0
        return self.status >= 400
