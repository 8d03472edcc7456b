"""The one error catalogue of the sidecar (design decision D6).

Every error an API caller can see is an :class:`APIError` built from a
:class:`CatalogueEntry` defined here: a stable ``ERR_*`` code, an HTTP status
and a gRPC status. Components raise domain errors (``daprlite.components.errors``),
blocks turn them into catalogue errors, and transports only translate an
``APIError`` into an HTTP body or a gRPC status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

Code = grpc.StatusCode


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One catalogue line: the stable code plus its HTTP and gRPC statuses."""

    code: str
    http_status: int
    grpc_status: grpc.StatusCode
    reason: str = ""  # google.rpc.ErrorInfo reason used by newer Dapr errors

    def __call__(self, message: str, **metadata: str) -> APIError:
        return APIError(self, message, dict(metadata))

    def with_status(self, http_status: int, grpc_status: grpc.StatusCode) -> CatalogueEntry:
        """The same code with other statuses (e.g. ERR_STATE_SAVE as 409 / ABORTED)."""
        return CatalogueEntry(self.code, http_status, grpc_status, self.reason)


@dataclass(slots=True)
class APIError(Exception):
    """An error that reaches the API caller, in the catalogue's terms."""

    entry: CatalogueEntry
    message: str
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    @property
    def code(self) -> str:
        return self.entry.code

    @property
    def http_status(self) -> int:
        return self.entry.http_status

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return self.entry.grpc_status

    def body(self) -> dict[str, object]:
        """The JSON body Dapr clients parse: ``{errorCode, message}`` plus details."""
        out: dict[str, object] = {"errorCode": self.code, "message": self.message}
        if self.entry.reason:
            out["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.entry.reason,
                    "domain": "dapr.io",
                    "metadata": dict(self.metadata),
                }
            ]
        return out


E = CatalogueEntry

# --- generic -----------------------------------------------------------------
MALFORMED_REQUEST = E("ERR_MALFORMED_REQUEST", 400, Code.INVALID_ARGUMENT)
ILLEGAL_KEY = E("ERR_MALFORMED_REQUEST", 400, Code.INVALID_ARGUMENT, "DAPR_STATE_ILLEGAL_KEY")
BODY_READ = E("ERR_BODY_READ", 400, Code.INVALID_ARGUMENT)
BODY_TOO_LARGE = E("ERR_BODY_READ", 413, Code.RESOURCE_EXHAUSTED)
BAD_REQUEST = E("ERR_BAD_REQUEST", 400, Code.INVALID_ARGUMENT)
API_UNIMPLEMENTED = E("ERR_API_UNIMPLEMENTED", 501, Code.UNIMPLEMENTED)
DIRECT_INVOKE = E("ERR_DIRECT_INVOKE", 404, Code.NOT_FOUND)
INTERNAL = E("ERROR", 500, Code.INTERNAL, "ERROR")
# daprlite sentry: the caller's service-account token did not authenticate, or it did but
# names another namespace / app id; the Kubernetes API it checks with cannot be reached.
SENTRY_UNAUTHENTICATED = E("ERR_SENTRY_UNAUTHENTICATED", 401, Code.UNAUTHENTICATED)
SENTRY_FORBIDDEN = E("ERR_SENTRY_FORBIDDEN", 403, Code.PERMISSION_DENIED)
SENTRY_UNAVAILABLE = E("ERR_SENTRY_UNAVAILABLE", 503, Code.UNAVAILABLE)

# --- state -------------------------------------------------------------------
STATE_STORE_NOT_CONFIGURED = E(
    "ERR_STATE_STORE_NOT_CONFIGURED", 500, Code.FAILED_PRECONDITION, "DAPR_STATE_NOT_CONFIGURED"
)
STATE_STORE_NOT_FOUND = E(
    "ERR_STATE_STORE_NOT_FOUND", 400, Code.INVALID_ARGUMENT, "DAPR_STATE_NOT_FOUND"
)
STATE_GET = E("ERR_STATE_GET", 500, Code.INTERNAL, "ERR_STATE_GET")
STATE_BULK_GET = E("ERR_STATE_BULK_GET", 500, Code.INTERNAL)
STATE_SAVE = E("ERR_STATE_SAVE", 500, Code.INTERNAL, "ERR_STATE_SAVE")
STATE_DELETE = E("ERR_STATE_DELETE", 500, Code.INTERNAL, "ERR_STATE_DELETE")
STATE_BULK_DELETE = E("ERR_STATE_BULK_DELETE", 500, Code.INTERNAL, "ERR_STATE_BULK_DELETE")
STATE_TRANSACTION = E("ERR_STATE_TRANSACTION", 500, Code.INTERNAL, "ERR_STATE_TRANSACTION")
STATE_OPERATION_NOT_SUPPORTED = E(
    "ERR_NOT_SUPPORTED_STATE_OPERATION",
    400,
    Code.UNIMPLEMENTED,
    "ERR_NOT_SUPPORTED_STATE_OPERATION",
)
STATE_TRANSACTIONS_NOT_SUPPORTED = E(
    "ERR_STATE_STORE_NOT_SUPPORTED",
    500,
    Code.UNIMPLEMENTED,
    "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED",
)
STATE_QUERY_NOT_SUPPORTED = E(
    "ERR_STATE_STORE_NOT_SUPPORTED", 500, Code.INTERNAL, "DAPR_STATE_QUERYING_NOT_SUPPORTED"
)
STATE_TOO_MANY_TRANSACTIONS = E(
    "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS",
    400,
    Code.INVALID_ARGUMENT,
    "DAPR_STATE_TOO_MANY_TRANSACTIONS",
)
STATE_QUERY = E("ERR_STATE_QUERY", 500, Code.INTERNAL, "DAPR_STATE_QUERY_FAILED")
# A query we cannot parse is the caller's mistake, so it is a 4xx (D7).
STATE_QUERY_MALFORMED = E("ERR_STATE_QUERY", 400, Code.INVALID_ARGUMENT, "DAPR_STATE_QUERY_FAILED")

# --- health / metadata ---------------------------------------------------------
HEALTH_NOT_READY = E("ERR_HEALTH_NOT_READY", 500, Code.UNAVAILABLE)
HEALTH_APPID_NOT_MATCH = E("ERR_HEALTH_APPID_NOT_MATCH", 500, Code.FAILED_PRECONDITION)
OUTBOUND_HEALTH_NOT_READY = E("ERR_OUTBOUND_HEALTH_NOT_READY", 500, Code.UNAVAILABLE)
METADATA_GET = E("ERR_METADATA_GET", 500, Code.INTERNAL)

# Statuses that certain codes take in particular situations.
ETAG_MISMATCH_STATUS = (409, Code.ABORTED)
ETAG_INVALID_STATUS = (400, Code.INVALID_ARGUMENT)

# --- service invocation ------------------------------------------------------------
# No target app id (the fallback route): DIRECT_INVOKE above, 404 / NOT_FOUND.
# The call could not be delivered (callee unknown or unreachable, timeout, open
# circuit breaker): 500 / INTERNAL, as Dapr answers.
DIRECT_INVOKE_FAILED = DIRECT_INVOKE.with_status(500, Code.INTERNAL)
# A malformed target or method (two dots in the id, a bad escape, a missing
# HTTP extension): the caller's mistake, so 400 / INVALID_ARGUMENT (D7).
DIRECT_INVOKE_BAD_REQUEST = DIRECT_INVOKE.with_status(400, Code.INVALID_ARGUMENT)
# The callee's access-control policy refused the caller.
DIRECT_INVOKE_FORBIDDEN = DIRECT_INVOKE.with_status(403, Code.PERMISSION_DENIED)

# --- HTTP middleware -----------------------------------------------------------------
# middleware.http.ratelimit refused a client past its requests-per-second limit.
RATE_LIMITED = E("ERR_RATE_LIMITED", 429, Code.RESOURCE_EXHAUSTED)

# --- pub/sub ------------------------------------------------------------------------
PUBSUB_NOT_CONFIGURED = E(
    "ERR_PUBSUB_NOT_CONFIGURED", 400, Code.FAILED_PRECONDITION, "DAPR_PUBSUB_NOT_CONFIGURED"
)
PUBSUB_EMPTY = E("ERR_PUBSUB_EMPTY", 404, Code.INVALID_ARGUMENT, "DAPR_PUBSUB_NAME_EMPTY")
PUBSUB_NOT_FOUND = E("ERR_PUBSUB_NOT_FOUND", 404, Code.INVALID_ARGUMENT, "DAPR_PUBSUB_NOT_FOUND")
TOPIC_NAME_EMPTY = E(
    "ERR_TOPIC_NAME_EMPTY", 404, Code.INVALID_ARGUMENT, "DAPR_PUBSUB_TOPIC_NAME_EMPTY"
)
PUBSUB_REQUEST_METADATA = E(
    "ERR_PUBSUB_REQUEST_METADATA",
    400,
    Code.INVALID_ARGUMENT,
    "DAPR_PUBSUB_METADATA_DESERIALIZATION",
)
# Dapr answers 500 when the body it should wrap claims to be a CloudEvent but is
# not one; that is the caller's mistake, so daprlite answers 400 (D7).
PUBSUB_CLOUD_EVENTS_SER = E(
    "ERR_PUBSUB_CLOUD_EVENTS_SER", 400, Code.INVALID_ARGUMENT, "DAPR_PUBSUB_CLOUD_EVENT_CREATION"
)
PUBSUB_EVENTS_SER = E(
    "ERR_PUBSUB_EVENTS_SER", 400, Code.INVALID_ARGUMENT, "DAPR_PUBSUB_MARSHAL_EVENTS"
)
PUBSUB_FORBIDDEN = E("ERR_PUBSUB_FORBIDDEN", 403, Code.PERMISSION_DENIED, "DAPR_PUBSUB_FORBIDDEN")
PUBSUB_PUBLISH_MESSAGE = E(
    "ERR_PUBSUB_PUBLISH_MESSAGE", 500, Code.INTERNAL, "DAPR_PUBSUB_PUBLISH_MESSAGE"
)

# --- bindings ----------------------------------------------------------------------
# Dapr answers 500 for every output-binding error; a missing binding, a missing or
# unsupported operation and bad request metadata are the caller's mistakes, so
# daprlite answers those 400 (D7) with the same code.
INVOKE_OUTPUT_BINDING = E(
    "ERR_INVOKE_OUTPUT_BINDING", 500, Code.INTERNAL, "ERR_INVOKE_OUTPUT_BINDING"
)
INVOKE_OUTPUT_BINDING_BAD_REQUEST = INVOKE_OUTPUT_BINDING.with_status(400, Code.INVALID_ARGUMENT)

# --- secrets -----------------------------------------------------------------------
SECRET_STORES_NOT_CONFIGURED = E("ERR_SECRET_STORES_NOT_CONFIGURED", 500, Code.FAILED_PRECONDITION)
# 401 is what Dapr's runtime answers for an unknown secret store (its docs say 400).
SECRET_STORE_NOT_FOUND = E("ERR_SECRET_STORE_NOT_FOUND", 401, Code.INVALID_ARGUMENT)
SECRET_PERMISSION_DENIED = E("ERR_PERMISSION_DENIED", 403, Code.PERMISSION_DENIED)
SECRET_GET = E("ERR_SECRET_GET", 500, Code.INTERNAL)

# --- auth (daprlite's own block: /v1.0-alpha1/auth, daprlite.runtime.v1.Auth) ------------
# A refused token or session is 401 / UNAUTHENTICATED, each with its own code so
# that an app can tell "log in again" (expired) from "this is an attack" (invalid).
# Messages name the reason and never the token or the session id.
AUTH_TOKEN_INVALID = E("ERR_AUTH_TOKEN_INVALID", 401, Code.UNAUTHENTICATED)
AUTH_TOKEN_MISSING = E("ERR_AUTH_TOKEN_MISSING", 401, Code.UNAUTHENTICATED)
AUTH_TOKEN_EXPIRED = E("ERR_AUTH_TOKEN_EXPIRED", 401, Code.UNAUTHENTICATED)
AUTH_TOKEN_NOT_YET_VALID = E("ERR_AUTH_TOKEN_NOT_YET_VALID", 401, Code.UNAUTHENTICATED)
AUTH_AUDIENCE = E("ERR_AUTH_AUDIENCE", 401, Code.UNAUTHENTICATED)
AUTH_ISSUER = E("ERR_AUTH_ISSUER", 401, Code.UNAUTHENTICATED)
AUTH_CLAIMS = E("ERR_AUTH_CLAIMS", 401, Code.UNAUTHENTICATED)
AUTH_KEY_NOT_FOUND = E("ERR_AUTH_KEY_NOT_FOUND", 401, Code.UNAUTHENTICATED)
AUTH_SESSION_INVALID = E("ERR_AUTH_SESSION_INVALID", 401, Code.UNAUTHENTICATED)
AUTH_BAD_REQUEST = E("ERR_AUTH_BAD_REQUEST", 400, Code.INVALID_ARGUMENT)
AUTH_COMPONENT_NOT_FOUND = E("ERR_AUTH_COMPONENT_NOT_FOUND", 404, Code.NOT_FOUND)
# The identity provider's keys (JWKS, OIDC discovery) cannot be fetched and none are cached.
AUTH_KEYS_UNAVAILABLE = E("ERR_AUTH_KEYS_UNAVAILABLE", 503, Code.UNAVAILABLE)
# The state store behind auth.sessions failed (unreachable, timed out).
AUTH_SESSION_STORE = E("ERR_AUTH_SESSION_STORE", 503, Code.UNAVAILABLE)

# Every ERR_AUTH_* code by name, for the auth block's mapping of AuthError.code.
AUTH_ERRORS: dict[str, CatalogueEntry] = {
    entry.code: entry
    for entry in (
        AUTH_TOKEN_INVALID,
        AUTH_TOKEN_MISSING,
        AUTH_TOKEN_EXPIRED,
        AUTH_TOKEN_NOT_YET_VALID,
        AUTH_AUDIENCE,
        AUTH_ISSUER,
        AUTH_CLAIMS,
        AUTH_KEY_NOT_FOUND,
        AUTH_SESSION_INVALID,
        AUTH_BAD_REQUEST,
        AUTH_COMPONENT_NOT_FOUND,
        AUTH_KEYS_UNAVAILABLE,
        AUTH_SESSION_STORE,
    )
}
