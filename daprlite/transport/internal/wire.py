"""How an invocation is written on the sidecar-to-sidecar hop, and read back.

HTTP/1.1 was measured faster than grpc.aio for this hop (bench/RESULTS.md),
so one invocation is one ``POST /v1/invoke/<method>`` between sidecars. The
verb, query, caller identity, target and gRPC-specific fields travel in
``x-daprlite-*`` headers; the caller's own headers travel as they are (the
caller's sidecar has already removed any ``x-daprlite-*`` header an app
sent). The answer is always HTTP 200 with the app's status in
``x-daprlite-status``, so that no status (204, 304, 1xx) changes how the
body is framed; a refusal by the callee's sidecar itself carries
``x-daprlite-error`` and a catalogue error body.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from urllib.parse import quote, unquote

from daprlite import errors
from daprlite.blocks.invoke.model import (
    APP_GRPC,
    APP_HTTP,
    VERBS,
    Caller,
    InvokeRequest,
    InvokeResponse,
)

PATH_PREFIX = "/v1/invoke/"

H_VERB = "x-daprlite-verb"
H_QUERY = "x-daprlite-query"
H_CALLER = "x-daprlite-caller-app-id"
H_CALLER_NS = "x-daprlite-caller-namespace"
H_CALLEE = "x-daprlite-callee"
H_CALLEE_NS = "x-daprlite-callee-namespace"
H_TYPE_URL = "x-daprlite-type-url"
H_ORIGIN = "x-daprlite-origin"
H_STATUS = "x-daprlite-status"
H_PROTOCOL = "x-daprlite-protocol"
H_GRPC_MESSAGE = "x-daprlite-grpc-message"
H_GRPC_DETAILS = "x-daprlite-grpc-details"
H_TRAILER = "x-daprlite-trailer"
H_ERROR = "x-daprlite-error"

ERROR_UNAVAILABLE = "unavailable"
ERROR_REFUSED = "refused"

_SAFE = "/!$&'()*+,;=:@-._~"


def request_path(method: str) -> str:
    return PATH_PREFIX + quote(method, safe=_SAFE)


def request_headers(req: InvokeRequest, callee: Caller, caller: Caller) -> list[tuple[str, str]]:
    out = list(req.headers)
    out += [
        (H_VERB, req.verb),
        (H_CALLEE, callee.app_id),
        (H_CALLEE_NS, callee.namespace),
        (H_CALLER, caller.app_id),
        (H_CALLER_NS, caller.namespace),
    ]
    if req.query:
        out.append((H_QUERY, req.query))
    if req.content_type:
        out.append(("content-type", req.content_type))
    if req.data_type_url:
        out.append((H_TYPE_URL, req.data_type_url))
    if req.grpc_origin:
        out.append((H_ORIGIN, "grpc"))
    return out


def parse_request(
    raw_path: str, headers: Iterable[tuple[str, str]], body: bytes
) -> tuple[InvokeRequest, Caller, Caller]:
    """The request, the callee it was meant for, and the caller."""
    fields: dict[str, str] = {}
    forwarded: list[tuple[str, str]] = []
    content_type = ""
    for k, v in headers:
        low = k.lower()
        if low.startswith("x-daprlite-"):
            fields[low] = v
        elif low == "content-type":
            content_type = v
        elif low in ("content-length", "host", "traceparent", "tracestate", "connection"):
            continue
        else:
            forwarded.append((low, v))
    verb = fields.get(H_VERB, "POST").upper()
    if verb not in VERBS:
        verb = "POST"
    method = unquote(raw_path.split("?", 1)[0][len(PATH_PREFIX) :])
    req = InvokeRequest(
        method=method,
        verb=verb,
        query=fields.get(H_QUERY, ""),
        headers=tuple(forwarded),
        body=body,
        content_type=content_type,
        data_type_url=fields.get(H_TYPE_URL, ""),
        grpc_origin=fields.get(H_ORIGIN) == "grpc",
    )
    caller = Caller(fields.get(H_CALLER, ""), fields.get(H_CALLER_NS, ""))
    callee = Caller(fields.get(H_CALLEE, ""), fields.get(H_CALLEE_NS, ""))
    return req, callee, caller


def _encode_pair(k: str, v: str) -> str:
    return f"{quote(k, safe='')}={quote(v, safe='')}"


def response_headers(resp: InvokeResponse) -> list[tuple[str, str]]:
    out = list(resp.headers)
    out += [(H_STATUS, str(resp.status)), (H_PROTOCOL, resp.app_protocol)]
    if resp.content_type:
        out.append(("content-type", resp.content_type))
    if resp.data_type_url:
        out.append((H_TYPE_URL, resp.data_type_url))
    if resp.grpc_message:
        out.append((H_GRPC_MESSAGE, quote(resp.grpc_message, safe="")))
    if resp.grpc_details:
        out.append((H_GRPC_DETAILS, base64.b64encode(resp.grpc_details).decode()))
    out += [(H_TRAILER, _encode_pair(k, v)) for k, v in resp.trailers]
    return out


def parse_response(headers: Iterable[tuple[str, str]], body: bytes) -> InvokeResponse:
    fields: dict[str, str] = {}
    trailers: list[tuple[str, str]] = []
    passed: list[tuple[str, str]] = []
    content_type = ""
    for k, v in headers:
        low = k.lower()
        if low == H_TRAILER:
            name, _, value = v.partition("=")
            trailers.append((unquote(name), unquote(value)))
        elif low.startswith("x-daprlite-"):
            fields[low] = v
        elif low == "content-type":
            content_type = v
        elif low not in ("content-length", "date", "server", "connection", "keep-alive"):
            passed.append((k, v))
    protocol = APP_GRPC if fields.get(H_PROTOCOL) == APP_GRPC else APP_HTTP
    details = fields.get(H_GRPC_DETAILS, "")
    return InvokeResponse(
        app_protocol=protocol,
        status=int(fields.get(H_STATUS, "500")),
        headers=tuple(passed),
        body=body,
        content_type=content_type,
        data_type_url=fields.get(H_TYPE_URL, ""),
        trailers=tuple(trailers),
        grpc_message=unquote(fields.get(H_GRPC_MESSAGE, "")),
        grpc_details=base64.b64decode(details) if details else b"",
    )


def refusal_entry(http_status: int) -> errors.CatalogueEntry:
    """The catalogue entry for a refusal the callee's sidecar sent back."""
    return {
        400: errors.DIRECT_INVOKE_BAD_REQUEST,
        403: errors.DIRECT_INVOKE_FORBIDDEN,
        413: errors.BODY_TOO_LARGE,
    }.get(http_status, errors.DIRECT_INVOKE_FAILED)
