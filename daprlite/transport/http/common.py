"""Helpers every HTTP route module uses: bodies, query metadata, error replies.

Transport step of the request path: these only parse and shape; every
decision is the block's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from aiohttp import web

from daprlite import errors

JSON = "application/json"
_HEADER_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e\t]*$")
MAX_BODY_KEY = web.AppKey("max_body_size", int)


def error_response(exc: errors.APIError) -> web.Response:
    return web.json_response(exc.body(), status=exc.http_status)


def request_metadata(request: web.Request) -> dict[str, str]:
    """``?metadata.k=v`` query parameters, prefix stripped; the first value wins."""
    out: dict[str, str] = {}
    if not request.query_string:
        return out
    for k, v in request.query.items():
        if k.startswith("metadata."):
            out.setdefault(k[len("metadata.") :], v)
    return out


async def read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise errors.BODY_TOO_LARGE(
            f"request body is larger than the limit of {request.app[MAX_BODY_KEY]} bytes "
            "(--max-body-size)"
        ) from exc
    except (ConnectionError, OSError) as exc:
        raise errors.BODY_READ(f"failed to read the request body: {exc}") from exc


async def json_body(request: web.Request) -> object:
    body = await read_body(request)
    try:
        return json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.MALFORMED_REQUEST(f"failed to parse the request body as JSON: {exc}") from exc


def header_safe(metadata: Mapping[str, str]) -> dict[str, str]:
    """The entries that can travel as HTTP headers / gRPC metadata unchanged.

    Response metadata may echo user text (a multi-line SQL statement, a
    non-ASCII header of a remote server); such an entry is left out rather
    than breaking the reply after the operation already ran.
    """
    return {
        k: v for k, v in metadata.items() if k and _HEADER_TOKEN.match(k) and _HEADER_VALUE.match(v)
    }


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    """Component response metadata goes out as ``metadata.{k}`` headers."""
    return {f"metadata.{k}": v for k, v in header_safe(metadata).items()}


def encode_json_value(value: object, field: str = "value") -> bytes:
    """JSON encoding of a value, compact as Dapr's Go runtime writes it."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800"
        raise errors.MALFORMED_REQUEST(
            f"{field} holds text that is not valid Unicode (a lone surrogate at "
            f"position {exc.start})"
        ) from exc
