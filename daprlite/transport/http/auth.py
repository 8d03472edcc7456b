"""HTTP routes of the auth block (daprlite's own API, ``/v1.0-alpha1/auth/{name}/...``).

Transport step of the request path: each handler parses the request, calls
:class:`~daprlite.blocks.auth.AuthAPI` and shapes the reply. Errors are the
catalogue's ``{errorCode, message}`` bodies.

=========================================================  ======================================
``POST   validate``                                        200 ``{"claims": {...}}``
``POST   sessions``                                        201 ``{"sessionId", "subject",
                                                           "claims", "createdAt", "expiresAt"}``
``GET    sessions/{id}``                                   200 the session, as above
``POST   sessions/{id}/refresh``                           200 the session with its new expiry
``DELETE sessions/{id}``                                   204 (also when already gone)
``DELETE subjects/{subject}/sessions``                     200 ``{"revoked": n}``
=========================================================  ======================================

``validate`` takes the token as ``Authorization: Bearer <token>`` or as
``{"token": "..."}``. ``sessions`` takes ``{"token": "..."}`` (checked by the
auth.jwt component named in the sessions component's ``validator``; the
session's subject is the token's ``sub``) or ``{"subject": "...", "claims":
{...}}``, and optionally ``"ttlInSeconds"``; ``refresh`` takes an optional
``{"ttlInSeconds": n}``. Times are Unix epoch seconds. A refused token or
session is 401 with an ``ERR_AUTH_*`` code; bad input is 400
``ERR_AUTH_BAD_REQUEST`` naming the field (a body that is not a JSON object,
holds NaN or Infinity, or nests too deeply names ``body``); an unknown
component is 404 ``ERR_AUTH_COMPONENT_NOT_FOUND``.
"""

from __future__ import annotations

import functools
import json

from aiohttp import web

from daprlite import errors
from daprlite.blocks.auth import AuthAPI, json_object
from daprlite.blocks.auth import loggable_path as loggable_path  # used by server.py
from daprlite.components.auth.api import Session
from daprlite.transport.http.common import read_body

API_KEY = web.AppKey("auth_api", AuthAPI)
PREFIX = "/v1.0-alpha1/auth/{name}"
# Replies are strict JSON: NaN or Infinity never leave the sidecar.
_dumps = functools.partial(json.dumps, allow_nan=False)


async def _object(request: web.Request) -> dict[str, object]:
    """The JSON object body; an empty body is ``{}``."""
    body = await read_body(request)
    if not body.strip():
        return {}
    return json_object(body, "body")


def _string(doc: dict[str, object], field: str) -> str | None:
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.AUTH_BAD_REQUEST(f"{field}: must be a string")
    return value


def _ttl(doc: dict[str, object]) -> int | None:
    value = doc.get("ttlInSeconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.AUTH_BAD_REQUEST(
            f"ttlInSeconds: must be a positive whole number of seconds, got {json.dumps(value)}"
        )
    return value


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.AUTH_BAD_REQUEST("Authorization: expected 'Bearer <token>'")
    return token.strip()


def session_json(session: Session) -> dict[str, object]:
    return {
        "sessionId": session.session_id,
        "subject": session.subject,
        "claims": dict(session.claims),
        "createdAt": int(session.created_at),
        "expiresAt": int(session.expires_at),
    }


async def validate(request: web.Request) -> web.Response:
    token = _bearer(request)
    if token is None:
        token = _string(await _object(request), "token")
    claims = await request.app[API_KEY].validate(request.match_info["name"], token or "")
    return web.json_response({"claims": claims}, dumps=_dumps)


async def create_session(request: web.Request) -> web.Response:
    doc = await _object(request)
    claims = doc.get("claims")
    if claims is not None and not isinstance(claims, dict):
        raise errors.AUTH_BAD_REQUEST("claims: must be a JSON object")
    session = await request.app[API_KEY].create_session(
        request.match_info["name"],
        subject=_string(doc, "subject"),
        token=_string(doc, "token"),
        claims=claims,
        ttl_seconds=_ttl(doc),
    )
    return web.json_response(session_json(session), status=201, dumps=_dumps)


async def get_session(request: web.Request) -> web.Response:
    session = await request.app[API_KEY].validate_session(
        request.match_info["name"], request.match_info["id"]
    )
    return web.json_response(session_json(session), dumps=_dumps)


async def refresh_session(request: web.Request) -> web.Response:
    doc = await _object(request)
    session = await request.app[API_KEY].refresh_session(
        request.match_info["name"], request.match_info["id"], _ttl(doc)
    )
    return web.json_response(session_json(session), dumps=_dumps)


async def revoke_session(request: web.Request) -> web.Response:
    await request.app[API_KEY].revoke_session(request.match_info["name"], request.match_info["id"])
    return web.Response(status=204)


async def revoke_subject(request: web.Request) -> web.Response:
    revoked = await request.app[API_KEY].revoke_subject(
        request.match_info["name"], request.match_info["subject"]
    )
    return web.json_response({"revoked": revoked})


def routes() -> list[web.RouteDef]:
    return [
        web.post(f"{PREFIX}/validate", validate),
        web.post(f"{PREFIX}/sessions", create_session),
        web.get(f"{PREFIX}/sessions/{{id}}", get_session),
        web.post(f"{PREFIX}/sessions/{{id}}/refresh", refresh_session),
        web.delete(f"{PREFIX}/sessions/{{id}}", revoke_session),
        web.delete(f"{PREFIX}/subjects/{{subject}}/sessions", revoke_subject),
    ]
