"""The internal listener: invocations arriving from other sidecars.

Callee side of the sidecar-to-sidecar hop. It only decodes the wire format
(:mod:`daprlite.transport.internal.wire`), checks that the call is meant for
this sidecar's app, and hands it to :class:`LocalApp`. With mTLS the
listener serves TLS and requires a client certificate from the trust anchors;
the caller's identity is then the SPIFFE ID of that certificate, and a call
whose route header names another caller is refused. Without mTLS the
identity is whatever the calling sidecar wrote, unverified: access-control
policies do not apply to it, only the global default.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from multidict import CIMultiDict

from daprlite import errors
from daprlite.blocks.invoke.local import LocalApp
from daprlite.blocks.invoke.model import Caller
from daprlite.blocks.invoke.paths import normalise_method, same_namespace
from daprlite.channel.errors import AppUnavailableError
from daprlite.observability.tracing import continue_trace
from daprlite.security.mtls import peer_identity
from daprlite.transport.internal import wire

log = logging.getLogger("daprlite.internal")

_LOCAL_KEY = web.AppKey("local_app", LocalApp)
_MTLS_KEY = web.AppKey("mtls", bool)


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
    # Callers' sidecars send the method normalised; anything else did not come from one,
    # and is refused rather than checked in one form and delivered in another.
    try:
        normal = normalise_method(req.method)
    except errors.APIError as exc:
        return _error(wire.ERROR_REFUSED, exc)
    if normal != req.method:
        return _error(
            wire.ERROR_REFUSED,
            errors.DIRECT_INVOKE_BAD_REQUEST(f"method {req.method!r} is not a normalised path"),
        )
    if callee.app_id != local.app_id or not same_namespace(callee.namespace, local.namespace):
        # Ports are reused after restarts: a stale record may point the caller here.
        return _error(
            wire.ERROR_UNAVAILABLE,
            errors.DIRECT_INVOKE_FAILED(
                f"this sidecar serves app {local.app_id!r}, not {callee.app_id!r}"
            ),
        )
    if request.app[_MTLS_KEY]:
        proven = _verified_caller(request, caller)
        if isinstance(proven, web.Response):
            return proven
        caller = proven
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


def _verified_caller(request: web.Request, claimed: Caller) -> Caller | web.Response:
    """The caller named by its certificate; a refusal when it has none or claims another."""
    peer = peer_identity(
        request.transport.get_extra_info("peercert") if request.transport else None
    )
    if peer is None:
        return _error(
            wire.ERROR_REFUSED,
            errors.DIRECT_INVOKE_FORBIDDEN(
                "the caller's certificate carries no SPIFFE ID (spiffe://<trust domain>/ns/"
                "<namespace>/<app id>)"
            ),
        )
    if peer.app_id != claimed.app_id or not same_namespace(peer.namespace, claimed.namespace):
        log.warning("refused a call from %s that claimed to come from app %r", peer, claimed.app_id)
        return _error(
            wire.ERROR_REFUSED,
            errors.DIRECT_INVOKE_FORBIDDEN(
                f"the caller claims to be app {claimed.app_id!r} but its certificate names "
                f"app {peer.app_id!r} in namespace {peer.namespace!r}"
            ),
        )
    return Caller(peer.app_id, peer.namespace, peer.trust_domain, verified=True)


def build_internal_app(local: LocalApp, max_body_size: int, mtls: bool = False) -> web.Application:
    app = web.Application(client_max_size=max_body_size)
    app[_LOCAL_KEY] = local
    app[_MTLS_KEY] = mtls
    app.router.add_route("POST", wire.PATH_PREFIX + "{method:.*}", _invoke)
    return app
