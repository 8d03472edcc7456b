"""gRPC ``daprlite.runtime.v1.Auth`` over the auth block.

Transport step of the request path, the twin of ``transport/http/auth.py``:
each RPC converts its proto message, calls :class:`~daprlite.blocks.auth.AuthAPI`
and converts the answer back. Catalogue errors become a gRPC status with an
``ErrorInfo`` detail (``common.call``). Claims are JSON objects in ``bytes``
fields (strict JSON objects: no NaN, Infinity or deep nesting, see
:func:`~daprlite.blocks.auth.json_object`); an empty field means no claims; a
zero ttl means the default.
"""

from __future__ import annotations

import json

import grpc

from daprlite import errors
from daprlite._proto.daprlite.runtime.v1 import auth_pb2, auth_pb2_grpc
from daprlite.blocks.auth import AuthAPI, json_object
from daprlite.components.auth.api import Session
from daprlite.transport.grpc.common import call


def _claims(data: bytes) -> dict[str, object] | None:
    return json_object(data, "claims_json") if data else None


def _json(claims: object) -> bytes:
    return json.dumps(claims, separators=(",", ":"), allow_nan=False).encode()


def _ttl(value: int) -> int | None:
    if value < 0:
        raise errors.AUTH_BAD_REQUEST(f"ttl_in_seconds: must not be negative, got {value}")
    return value or None


def _session(session: Session) -> auth_pb2.SessionResponse:
    return auth_pb2.SessionResponse(
        session_id=session.session_id,
        subject=session.subject,
        claims_json=_json(dict(session.claims)),
        created_at=int(session.created_at),
        expires_at=int(session.expires_at),
    )


class AuthServicer(auth_pb2_grpc.AuthServicer):
    """The ``daprlite.runtime.v1.Auth`` service over :class:`AuthAPI`."""

    def __init__(self, auth: AuthAPI) -> None:
        self._auth = auth

    async def ValidateToken(
        self, request: auth_pb2.ValidateTokenRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.ValidateTokenResponse:
        async def work() -> auth_pb2.ValidateTokenResponse:
            claims = await self._auth.validate(request.component_name, request.token)
            return auth_pb2.ValidateTokenResponse(claims_json=_json(claims))

        return await call(context, work)

    async def CreateSession(
        self, request: auth_pb2.CreateSessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SessionResponse:
        async def work() -> auth_pb2.SessionResponse:
            session = await self._auth.create_session(
                request.component_name,
                subject=request.subject or None,
                token=request.token or None,
                claims=_claims(request.claims_json),
                ttl_seconds=_ttl(request.ttl_in_seconds),
            )
            return _session(session)

        return await call(context, work)

    async def ValidateSession(
        self, request: auth_pb2.SessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SessionResponse:
        async def work() -> auth_pb2.SessionResponse:
            return _session(
                await self._auth.validate_session(request.component_name, request.session_id)
            )

        return await call(context, work)

    async def RefreshSession(
        self, request: auth_pb2.RefreshSessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.SessionResponse:
        async def work() -> auth_pb2.SessionResponse:
            session = await self._auth.refresh_session(
                request.component_name, request.session_id, _ttl(request.ttl_in_seconds)
            )
            return _session(session)

        return await call(context, work)

    async def RevokeSession(
        self, request: auth_pb2.SessionRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeSessionResponse:
        async def work() -> auth_pb2.RevokeSessionResponse:
            await self._auth.revoke_session(request.component_name, request.session_id)
            return auth_pb2.RevokeSessionResponse()

        return await call(context, work)

    async def RevokeSubjectSessions(
        self, request: auth_pb2.RevokeSubjectSessionsRequest, context: grpc.aio.ServicerContext
    ) -> auth_pb2.RevokeSubjectSessionsResponse:
        async def work() -> auth_pb2.RevokeSubjectSessionsResponse:
            revoked = await self._auth.revoke_subject(request.component_name, request.subject)
            return auth_pb2.RevokeSubjectSessionsResponse(revoked=revoked)

        return await call(context, work)
