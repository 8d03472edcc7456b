"""gRPC ``InvokeService``: the SDKs' way to call another app over gRPC.

Converts the proto request into the same block call the HTTP route makes,
and the answer back as Dapr does (dapr-api.md 3.4): a gRPC app's response,
headers, trailers and error status pass through; an HTTP app's answer
becomes ``InvokeResponse`` plus a ``dapr-http-status`` header, and a non-2xx
status becomes the matching gRPC error with a ``google.rpc.ErrorInfo``.
"""

from __future__ import annotations

import http
import re

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from daprlite._proto.dapr.proto.common.v1 import common_pb2
from daprlite._proto.dapr.proto.runtime.v1 import invoke_pb2
from daprlite.blocks.invoke.api import InvokeAPI
from daprlite.blocks.invoke.headers import forwardable
from daprlite.blocks.invoke.model import APP_GRPC, VERB_NAMES, InvokeRequest, InvokeResponse
from daprlite.blocks.invoke.paths import normalise_method
from daprlite.transport.grpc.common import call

_CODES = {c.value[0]: c for c in grpc.StatusCode}
_KEY = re.compile(r"^[0-9a-z_.-]+$")
_VALUE = re.compile(r"^[\x20-\x7e]*$")

# HTTP status -> gRPC code for HTTP callees (dapr-api.md 1.9; 400 is INTERNAL there).
_HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.CANCELLED,
    409: grpc.StatusCode.ALREADY_EXISTS,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.UNKNOWN,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def _metadata(pairs: object) -> list[tuple[str, str]]:
    """Entries that are valid gRPC metadata, names lower-cased; gRPC's own names left out."""
    out: list[tuple[str, str]] = []
    for k, v in pairs:  # type: ignore[attr-defined]
        key = str(k).lower()
        if (
            isinstance(v, str)
            and _KEY.match(key)
            and _VALUE.match(v)
            and not key.startswith("grpc-")
            and key not in ("content-type", "user-agent", "te")
        ):
            out.append((key, v))
    return out


def _text_metadata(context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
    return [(k, v) for k, v in context.invocation_metadata() or () if isinstance(v, str)]


def _http_error_status(resp: InvokeResponse) -> grpc.Status:
    try:
        phrase = http.HTTPStatus(resp.status).phrase
    except ValueError:
        phrase = "Unknown"
    text = resp.body[:63].decode("utf-8", "replace")
    info = error_details_pb2.ErrorInfo(
        reason=phrase,
        domain="dapr.io",
        metadata={"http.code": str(resp.status), "http.error_message": text},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    code = _HTTP_TO_GRPC.get(resp.status, grpc.StatusCode.UNKNOWN)
    status = status_pb2.Status(
        code=code.value[0],
        message=f"the app answered HTTP {resp.status} {phrase}",
        details=[detail],
    )
    return rpc_status.to_status(status)


class InvokeRPCs:
    _invoke: InvokeAPI

    async def InvokeService(
        self, request: invoke_pb2.InvokeServiceRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.InvokeResponse:
        msg = request.message
        text_md = _text_metadata(context)
        md = dict(text_md)
        verb = "NONE"
        query = ""
        if msg.HasField("http_extension"):
            verb = VERB_NAMES.get(msg.http_extension.verb, "POST")
            query = msg.http_extension.querystring
        api = self._invoke

        async def work() -> InvokeResponse:
            req = InvokeRequest(
                method=normalise_method(msg.method),
                verb=verb,
                query=query,
                headers=forwardable(text_md),
                body=msg.data.value,
                content_type=msg.content_type,
                data_type_url=msg.data.type_url,
                grpc_origin=True,
            )
            trace = api.trace_for(md.get("traceparent"), md.get("tracestate"))
            return await api.invoke(request.id, req, trace)

        resp = await call(context, work)
        if resp.app_protocol == APP_GRPC:
            await context.send_initial_metadata(_metadata(resp.headers))
            if resp.status != 0:
                trailing = _metadata(resp.trailers)
                if resp.grpc_details:
                    trailing.append(("grpc-status-details-bin", resp.grpc_details))  # type: ignore[arg-type]
                await context.abort(
                    _CODES.get(resp.status, grpc.StatusCode.UNKNOWN),
                    resp.grpc_message,
                    trailing_metadata=tuple(trailing),
                )
            context.set_trailing_metadata(tuple(_metadata(resp.trailers)))
        else:
            await context.send_initial_metadata(
                [("dapr-http-status", str(resp.status)), *_metadata(resp.headers)]
            )
            if not 200 <= resp.status < 300:
                await context.abort_with_status(_http_error_status(resp))
        out = common_pb2.InvokeResponse(content_type=resp.content_type)
        out.data.type_url = resp.data_type_url
        out.data.value = resp.body
        return out
