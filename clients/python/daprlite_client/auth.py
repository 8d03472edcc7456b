"""A small async client for daprlite's auth building block (``daprlite.runtime.v1.Auth``).

It sits in the application process and calls its sidecar's gRPC port: validate
a JWT with an ``auth.jwt`` component, and create, validate, refresh and revoke
sessions kept by an ``auth.sessions`` component. Claims are plain dicts (they
travel as JSON). A refused token or session raises :class:`AuthRefused`
carrying the sidecar's ``ERR_AUTH_*`` code; other failures raise
:class:`AuthCallError`.

Example::

    async with AuthClient("127.0.0.1:50001") as auth:
        claims = await auth.validate("jwt", bearer_token)
        session = await auth.create_session("sessions", token=bearer_token)
        session = await auth.validate_session("sessions", session.session_id)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

from daprlite_client._channel import SidecarChannel
from daprlite_client._proto.daprlite.runtime.v1 import auth_pb2, auth_pb2_grpc


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    subject: str
    claims: dict[str, object] = field(default_factory=dict)
    created_at: int = 0  # Unix epoch seconds
    expires_at: int = 0


class AuthCallError(Exception):
    """An auth call failed; ``code`` is the gRPC status, ``error_code`` the ERR_* code."""

    def __init__(self, operation: str, code: grpc.StatusCode, error_code: str, detail: str):
        super().__init__(f"{operation} failed: {code.name} {error_code}: {detail}")
        self.operation = operation
        self.code = code
        self.error_code = error_code
        self.detail = detail


class AuthRefused(AuthCallError):
    """The token or session was refused (UNAUTHENTICATED): log in again."""


def _error_code(error: grpc.aio.AioRpcError) -> str:
    """The ERR_* code from the status's google.rpc.ErrorInfo detail, '' if none."""
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                return info.reason
    return ""


def _failure(operation: str, error: grpc.aio.AioRpcError) -> AuthCallError:
    code = error.code()
    kind = AuthRefused if code == grpc.StatusCode.UNAUTHENTICATED else AuthCallError
    return kind(operation, code, _error_code(error), error.details() or "")


def _session(reply: auth_pb2.SessionResponse) -> Session:
    claims = json.loads(reply.claims_json) if reply.claims_json else {}
    return Session(reply.session_id, reply.subject, claims, reply.created_at, reply.expires_at)


class AuthClient(SidecarChannel):
    """Calls a sidecar's ``Auth`` gRPC service. ``address`` is e.g. ``"127.0.0.1:50001"``.

    Pass ``api_token`` when the sidecar runs with ``DAPR_API_TOKEN`` and
    ``timeout`` (seconds) for a deadline on every call. Create it inside a
    running event loop and close it (or use ``async with``).
    """

    def __init__(
        self, address: str, *, api_token: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(address, api_token=api_token, timeout=timeout)
        self._stub = auth_pb2_grpc.AuthStub(self._channel)

    async def validate(self, component: str, token: str) -> dict[str, object]:
        """The token's claims; raises :class:`AuthRefused` when it is not valid."""
        request = auth_pb2.ValidateTokenRequest(component_name=component, token=token)
        try:
            reply = await self._stub.ValidateToken(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure("validate", error) from error
        claims: dict[str, object] = json.loads(reply.claims_json)
        return claims

    async def create_session(
        self,
        component: str,
        *,
        token: str = "",
        subject: str = "",
        claims: dict[str, object] | None = None,
        ttl_seconds: int = 0,
    ) -> Session:
        """A new session from ``token`` or from ``subject`` (+ ``claims``)."""
        request = auth_pb2.CreateSessionRequest(
            component_name=component,
            token=token,
            subject=subject,
            claims_json=json.dumps(claims).encode() if claims else b"",
            ttl_in_seconds=ttl_seconds,
        )
        try:
            reply = await self._stub.CreateSession(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure("create_session", error) from error
        return _session(reply)

    async def validate_session(self, component: str, session_id: str) -> Session:
        request = auth_pb2.SessionRequest(component_name=component, session_id=session_id)
        try:
            reply = await self._stub.ValidateSession(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure("validate_session", error) from error
        return _session(reply)

    async def refresh_session(
        self, component: str, session_id: str, ttl_seconds: int = 0
    ) -> Session:
        request = auth_pb2.RefreshSessionRequest(
            component_name=component, session_id=session_id, ttl_in_seconds=ttl_seconds
        )
        try:
            reply = await self._stub.RefreshSession(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure("refresh_session", error) from error
        return _session(reply)

    async def revoke_session(self, component: str, session_id: str) -> None:
        request = auth_pb2.SessionRequest(component_name=component, session_id=session_id)
        try:
            await self._stub.RevokeSession(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _failure("revoke_session", error) from error

    async def revoke_subject(self, component: str, subject: str) -> int:
        """End every session of ``subject``; how many were live."""
        request = auth_pb2.RevokeSubjectSessionsRequest(component_name=component, subject=subject)
        try:
            reply = await self._stub.RevokeSubjectSessions(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _failure("revoke_subject", error) from error
        return int(reply.revoked)

    def __repr__(self) -> str:
        return f"AuthClient({self._address!r})"
