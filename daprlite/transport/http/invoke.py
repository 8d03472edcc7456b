"""HTTP routes of service invocation: ``/v1.0/invoke/{id}/method/{method...}``.

Also the header forms (``dapr-app-id: X`` or ``Authorization: Basic
base64(dapr-app-id:X)`` on any unmatched path), which the server's fallback
sends here. Parses the call into an :class:`InvokeRequest`, calls the block,
and writes the callee's answer back: an HTTP app's status, headers and body
unchanged; a gRPC app's answer mapped as Dapr maps it (dapr-api.md 3.1).
"""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web
from google.protobuf import json_format, message
from google.rpc import error_details_pb2, status_pb2
from multidict import CIMultiDict

from daprlite import errors
from daprlite.blocks.invoke.api import InvokeAPI
from daprlite.blocks.invoke.headers import forwardable
from daprlite.blocks.invoke.model import APP_GRPC, VERBS, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import decode_once, method_from_raw
from daprlite.observability.tracing import TRACEPARENT
from daprlite.transport.http.common import read_body

API_KEY = web.AppKey("invoke_api", InvokeAPI)

_PREFIX = "/v1.0/invoke/"

# gRPC status code -> HTTP status (dapr-api.md 1.8).
GRPC_TO_HTTP = {
    0: 200,
    1: 408,
    2: 500,
    3: 400,
    4: 504,
    5: 404,
    6: 409,
    7: 403,
    8: 429,
    9: 400,
    10: 409,
    11: 400,
    12: 501,
    13: 500,
    14: 503,
    15: 500,
    16: 401,
}

# Keep error_details_pb2 imported: it registers the google.rpc detail types,
# so details an app sends can be rendered as JSON.
_DETAIL_TYPES = error_details_pb2


def _split_invoke_path(raw_path: str) -> tuple[str, str]:
    """``(target, method)`` from the raw path; both still need decoding."""
    rest = raw_path.split("?", 1)[0][len(_PREFIX) :]
    target, sep, method = rest.partition("/method/")
    if not sep:
        if rest.endswith("/method"):
            return rest[: -len("/method")], ""
        raise errors.DIRECT_INVOKE_BAD_REQUEST(
            f"invalid invoke path {raw_path!r}: expected /v1.0/invoke/<app-id>/method/<method>"
        )
    return target, method


def app_id_from_headers(request: web.Request) -> str:
    """The target of the header forms, or "" when the request names none."""
    app_id = request.headers.get("dapr-app-id", "")
    if app_id:
        return app_id.strip()
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        if user == "dapr-app-id":
            return password
    return ""


async def _request(request: web.Request, method: str) -> InvokeRequest:
    verb = request.method.upper()
    headers = list(request.headers.items())
    if request.headers.get("dapr-app-id") is None and app_id_from_headers(request):
        # The Basic-auth form carried the target; it is not the app's credential.
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
    return InvokeRequest(
        method=method,
        verb=verb if verb in VERBS else "POST",
        query=request.rel_url.raw_query_string,
        headers=forwardable(headers),
        body=await read_body(request),
        content_type=request.headers.get("Content-Type", ""),
    )


async def invoke(request: web.Request, target: str, method: str) -> web.StreamResponse:
    api = request.app[API_KEY]
    req = await _request(request, method)
    trace = api.trace_for(request.headers.get("traceparent"), request.headers.get("tracestate"))
    resp = await api.invoke(target, req, trace)
    out = _shape(resp)
    if trace.sampled:
        out.headers[TRACEPARENT] = trace.traceparent
    return out


async def invoke_route(request: web.Request) -> web.StreamResponse:
    raw_target, raw_method = _split_invoke_path(request.raw_path)
    target = decode_once(raw_target, "app id")
    return await invoke(request, target, method_from_raw(raw_method))


async def invoke_by_header(request: web.Request, target: str) -> web.StreamResponse:
    """The fallback route with a target header: the whole path is the method."""
    return await invoke(request, target, method_from_raw(request.raw_path.split("?", 1)[0]))


def _shape(resp: InvokeResponse) -> web.Response:
    if resp.app_protocol != APP_GRPC:
        headers = CIMultiDict(resp.headers)
        if resp.content_type:
            headers["Content-Type"] = resp.content_type
        body = resp.body if resp.status not in (204, 304) else None
        return web.Response(status=resp.status, body=body, headers=headers)
    headers = CIMultiDict((k, v) for k, v in resp.headers if not k.startswith(":"))
    if resp.status == 0:
        headers["Content-Type"] = resp.content_type or (
            "application/x-protobuf" if resp.data_type_url else "application/json"
        )
        return web.Response(status=200, body=resp.body, headers=headers)
    payload = {"code": resp.status, "message": resp.grpc_message, "details": _details(resp)}
    headers["Content-Type"] = "application/json"
    return web.Response(
        status=GRPC_TO_HTTP.get(resp.status, 500),
        body=json.dumps(payload).encode(),
        headers=headers,
    )


def _details(resp: InvokeResponse) -> list[object]:
    if not resp.grpc_details:
        return []
    try:
        status = status_pb2.Status.FromString(resp.grpc_details)
    except message.DecodeError:
        return []
    out: list[object] = []
    for detail in status.details:
        try:
            out.append(json_format.MessageToDict(detail, preserving_proto_field_name=True))
        except (TypeError, KeyError, json_format.Error):
            out.append({"@type": detail.type_url})
    return out


def routes() -> list[web.RouteDef]:
    return [web.route("*", _PREFIX + "{tail:.*}", invoke_route)]
