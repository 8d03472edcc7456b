"""HTTP route of output bindings: ``POST|PUT /v1.0/bindings/{name}``.

Parses ``{data, metadata, operation}`` (``data`` is re-encoded as JSON, as Dapr
does: a JSON string reaches the component with its quotes), calls the
bindings block and writes the component's bytes with ``metadata.{k}`` headers.
"""

from __future__ import annotations

from aiohttp import web

from daprlite import errors
from daprlite.blocks.bindings import BindingsAPI
from daprlite.transport.http.common import JSON, encode_json_value, json_body, metadata_headers

API_KEY = web.AppKey("bindings_api", BindingsAPI)
TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


async def invoke_binding(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise errors.MALFORMED_REQUEST(
            'the request body must be an object {"operation": ..., "data": ..., "metadata": {...}}'
        )
    operation = body.get("operation") or ""
    if not isinstance(operation, str):
        raise errors.MALFORMED_REQUEST("operation must be a string")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise errors.MALFORMED_REQUEST("metadata must be an object of string values")
    for h in TRACE_HEADERS:
        if h in request.headers and h not in metadata:
            metadata[h] = request.headers[h]
    data = encode_json_value(body["data"], "data") if body.get("data") is not None else b""
    res = await request.app[API_KEY].invoke(request.match_info["name"], operation, data, metadata)
    headers = metadata_headers(res.metadata)
    if res.data is None:
        return web.Response(status=204, headers=headers)
    return web.Response(body=res.data, headers=headers, content_type=res.content_type or JSON)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1.0/bindings/{name}", invoke_binding),
        web.put("/v1.0/bindings/{name}", invoke_binding),
    ]
