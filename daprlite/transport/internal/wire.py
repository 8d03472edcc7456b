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

# "<verb> <callee> <callee ns> <caller> <caller ns> <origin>", namespaces "-" when
# empty: one header rather than six, since every header costs on both sidecars.
H_ROUTE = "x-daprlite-route"
H_QUERY = "x-daprlite-query"
H_TYPE_URL = "x-daprlite-type-url"
# "<status> <http|grpc>"
H_STATUS = "x-daprlite-status"
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
    route = (
        f"{req.verb} {callee.app_id} {callee.namespace or '-'} "
        f"{caller.app_id} {caller.namespace or '-'} {'grpc' if req.grpc_origin else 'http'}"
    )
    out.append((H_ROUTE, route))
    if req.query:
        out.append((H_QUERY, req.query))
    if req.content_type:
        out.append(("content-type", req.content_type))
    if req.data_type_url:
        out.append((H_TYPE_URL, req.data_type_url))
    return out


def _ns(field: str) -> str:
    return "" if field == "-" else field


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
    route = fields.get(H_ROUTE, "").split(" ")
    if len(route) != 6:
        route = ["POST", "", "-", "", "-", "http"]
    verb = route[0].upper() if route[0].upper() in VERBS else "POST"
    method = unquote(raw_path.split("?", 1)[0][len(PATH_PREFIX) :])
    req = InvokeRequest(
        method=method,
        verb=verb,
        query=fields.get(H_QUERY, ""),
        headers=tuple(forwarded),
        body=body,
        content_type=content_type,
        data_type_url=fields.get(H_TYPE_URL, ""),
        grpc_origin=route[5] == "grpc",
    )
    return req, Caller(route[1], _ns(route[2])), Caller(route[3], _ns(route[4]))


def _encode_pair(k: str, v: str) -> str:
    return f"{quote(k, safe='')}={quote(v, safe='')}"


def response_headers(resp: InvokeResponse) -> list[tuple[str, str]]:
    out = list(resp.headers)
    out.append((H_STATUS, f"{resp.status} {resp.app_protocol}"))
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
    status, _, protocol = fields.get(H_STATUS, "500 http").partition(" ")
    details = fields.get(H_GRPC_DETAILS, "")
    return InvokeResponse(
        app_protocol=APP_GRPC if protocol == APP_GRPC else APP_HTTP,
        status=int(status) if status.isdigit() else 500,
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
