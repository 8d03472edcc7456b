"""The internal listener: invocations arriving from other sidecars.

Callee side of the sidecar-to-sidecar hop. It only decodes the wire format
(:mod:`daprlite.transport.internal.wire`), checks that the call is meant for
this sidecar's app, and hands it to :class:`LocalApp`. Until mTLS lands the
caller's identity is whatever the calling sidecar wrote; the listener binds
to the same addresses as the APIs (loopback by default).
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from multidict import CIMultiDict

from daprlite import errors
from daprlite.blocks.invoke.local import LocalApp
from daprlite.blocks.invoke.paths import same_namespace
from daprlite.channel.errors import AppUnavailableError
from daprlite.observability.tracing import continue_trace
from daprlite.transport.internal import wire

log = logging.getLogger("daprlite.internal")

_LOCAL_KEY = web.AppKey("local_app", LocalApp)


def _error(kind: str, exc: errors.APIError) -> web.Response:
    return web.Response(
        status=exc.http_status,
        body=json.dumps(exc.body()).encode(),
        headers={wire.H_ERROR: kind, "Content-Type": "application/json"},
    )


async def _invoke(request: web.Request) -> web.StreamResponse:
    local = request.app[_LOCAL_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(
            wire.ERROR_REFUSED, errors.BODY_TOO_LARGE("request body is larger than the limit")
        )
    req, callee, caller = wire.parse_request(request.raw_path, request.headers.items(), body)
    if callee.app_id != local.app_id or not same_namespace(callee.namespace, local.namespace):
        # Ports are reused after restarts: a stale record may point the caller here.
        return _error(
            wire.ERROR_UNAVAILABLE,
            errors.DIRECT_INVOKE_FAILED(
                f"this sidecar serves app {local.app_id!r}, not {callee.app_id!r}"
            ),
        )
    trace = continue_trace(request.headers.get("traceparent"), request.headers.get("tracestate"))
    peer = request.remote or ""
    try:
        resp = await local.deliver(req, caller, trace, forwarded_for=peer)
    except errors.APIError as exc:
        return _error(wire.ERROR_REFUSED, exc)
    except AppUnavailableError as exc:
        return _error(wire.ERROR_UNAVAILABLE, errors.DIRECT_INVOKE_FAILED(str(exc)))
    except Exception:
        log.exception("unexpected error delivering %s to the app", req.method)
        return _error(
            wire.ERROR_REFUSED,
            errors.DIRECT_INVOKE_FAILED("internal error in the callee's sidecar; see its log"),
        )
    return web.Response(
        status=200, body=resp.body, headers=CIMultiDict(wire.response_headers(resp))
    )


def build_internal_app(local: LocalApp, max_body_size: int) -> web.Application:
    app = web.Application(client_max_size=max_body_size)
    app[_LOCAL_KEY] = local
    app.router.add_route("POST", wire.PATH_PREFIX + "{method:.*}", _invoke)
    return app
