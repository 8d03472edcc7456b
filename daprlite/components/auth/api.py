"""The auth component contracts: what the auth block and the bearer middleware rely on.

``auth.jwt`` implements :class:`TokenValidator`; ``auth.sessions`` implements
:class:`SessionStore`. The auth block (``blocks/auth.py``) and the
``middleware.http.bearer`` component only ever see these Protocols. A
component signals a refused token or session with :class:`AuthError`, whose
``code`` is one of the ``ERR_AUTH_*`` catalogue codes; the block maps it to
the catalogue entry (HTTP 401 / gRPC UNAUTHENTICATED for refusals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from daprlite.components.metadata import ComponentMetadata

# A claim value is whatever JSON the token carried.
Claims = Mapping[str, object]


class AuthError(Exception):
    """A token or session was refused; ``code`` is an ERR_AUTH_* catalogue code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@runtime_checkable
class TokenValidator(Protocol):
    """Checks a bearer token and returns its claims (``auth.jwt``)."""

    async def init(self, metadata: ComponentMetadata) -> None: ...

    def features(self) -> frozenset[str]: ...

    async def validate(self, token: str) -> dict[str, object]:
        """The token's claims once signature, time, issuer, audience and required
        claims are checked; raises AuthError otherwise. Never logs the token."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Session:
    """A live server-side session as the block returns it (never with its record's MAC)."""

    session_id: str
    subject: str
    claims: Mapping[str, object] = field(default_factory=dict)
    created_at: float = 0.0  # epoch seconds
    expires_at: float = 0.0  # epoch seconds; sliding on refresh


@runtime_checkable
class SessionStore(Protocol):
    """Creates, checks, refreshes and revokes opaque sessions (``auth.sessions``)."""

    async def init(self, metadata: ComponentMetadata) -> None: ...

    def features(self) -> frozenset[str]: ...

    async def create(self, subject: str, claims: Claims, ttl_seconds: float | None) -> Session: ...

    async def validate(self, session_id: str) -> Session:
        """The live session; raises AuthError (unknown, expired or revoked)."""
        ...

    async def refresh(self, session_id: str, ttl_seconds: float | None) -> Session: ...

    async def revoke(self, session_id: str) -> None: ...

    async def revoke_subject(self, subject: str) -> int:
        """Revoke every session of ``subject``; the number revoked."""
        ...

    async def close(self) -> None: ...


# --- what auth.sessions needs from the sidecar's state block --------------------------------
# The component keeps its records in a state store that another component
# provides. It never sees that store directly: the auth block hands it this
# narrow view of the state block (``blocks/auth.py`` adapts ``StateAPI``), so
# key prefixes, resiliency and scopes apply exactly as for an app's own calls.


@dataclass(frozen=True, slots=True)
class StoredItem:
    value: bytes
    etag: str | None


@dataclass(frozen=True, slots=True)
class StateWrite:
    """One write: ``value`` None deletes. ``etag`` guards it; ``insert_only`` (no etag)
    fails if the key exists. A guard that fails raises ``ETagMismatchError``."""

    key: str
    value: bytes | None
    etag: str | None = None
    insert_only: bool = False
    ttl_seconds: int | None = None


@runtime_checkable
class SessionStateAccess(Protocol):
    """The narrow view of the state block a session store keeps its records through."""

    def transactional(self, store: str) -> bool: ...

    def expires_keys(self, store: str) -> bool:
        """Whether the store honours ``ttl_seconds`` (its TTL feature)."""
        ...

    async def read(self, store: str, key: str) -> StoredItem | None: ...

    async def write(self, store: str, writes: Sequence[StateWrite]) -> None:
        """Apply ``writes``; more than one needs a transactional store and is atomic.

        Raises ``ETagMismatchError`` when a guard fails and ``ComponentError``
        when the store fails."""
        ...


@runtime_checkable
class StateBound(Protocol):
    """A component that needs the state block; the runtime calls ``bind`` after init."""

    def bind(self, state: SessionStateAccess) -> None: ...


def is_token_validator(instance: object) -> bool:
    """Whether ``instance`` validates tokens. ``runtime_checkable`` only looks at method
    names, and a session store also has ``validate``, so sessions are told apart here."""
    return isinstance(instance, TokenValidator) and not isinstance(instance, SessionStore)
