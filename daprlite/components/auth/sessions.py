"""``auth.sessions``: opaque session ids kept in one of the sidecar's state stores.

The auth block (``blocks/auth.py``) calls this component through the
:class:`~daprlite.components.auth.api.SessionStore` contract for
``/v1.0-alpha1/auth/{name}/sessions...`` and the gRPC ``Auth`` service. The
component owns no backend: after init the runtime binds it to the state block
(:meth:`StateSessionStore.bind`), and every record goes through the state
store named by ``stateStore``, with that store's key prefix, resiliency and
TTL support, as an app's own state calls would.

Records, under ``keyPrefix`` (default ``<component name>:``):

- ``s-<sha256(session id)>``: ``{subject, claims, createdAt, expiresAt, ttl,
  deadline}``. Only the hash of the id is stored, so a dump of the store holds
  no usable session id.
- ``u-<sha256(subject)>``: the subject's index ``{"sessions": {hash: expiresAt}}``,
  so that "revoke all sessions of a subject" works on any store. It is updated
  under its etag (in one transaction with the session record when the store is
  transactional), and pruned of dead entries whenever a session is added.

Expiry slides: :meth:`refresh` moves ``expiresAt`` to now + ttl, never past
``deadline`` (creation + ``maxTTL``, when set). ``expiresAt`` is checked on
every read, so an expired session is refused even by a store without TTL; a
store with TTL also drops the record itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from daprlite.components.auth.api import (
    AuthError,
    Claims,
    Session,
    SessionStateAccess,
    StateWrite,
    StoredItem,
)
from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting

_log = logging.getLogger("daprlite.component.auth")

SESSION_INVALID = "ERR_AUTH_SESSION_INVALID"
BAD_REQUEST = "ERR_AUTH_BAD_REQUEST"

# secrets.token_urlsafe(32) gives 43 characters; anything far from that shape is refused
# before it reaches the store.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
MAX_SUBJECT_LENGTH = 1024
MAX_TTL_SECONDS = 2**31 - 1
# How often an etag-guarded update of a subject's index is tried before giving up.
INDEX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Component metadata of ``auth.sessions`` (names are case-insensitive)."""

    stateStore: str = setting(required=True, doc="Name of the state store that keeps sessions.")
    ttl: Duration = setting(Duration(3600), doc="Default session lifetime (sliding on refresh).")
    maxTTL: Duration = setting(
        Duration(0), doc="Absolute cap from creation, however often refreshed; 0 means none."
    )
    keyPrefix: str = setting("", doc="Prefix of the state keys; default '<component name>:'.")
    validator: str = setting(
        "", doc="Name of the auth.jwt component that checks tokens sessions are created from."
    )

    def __post_init__(self) -> None:
        if not 1 <= self.ttl <= MAX_TTL_SECONDS:
            raise MetadataError("ttl", f"must be at least 1s, got {self.ttl:g}s")
        if self.maxTTL and not self.ttl <= self.maxTTL <= MAX_TTL_SECONDS:
            raise MetadataError("maxTTL", f"must be at least ttl ({self.ttl:g}s) or 0 for none")
        if "||" in self.keyPrefix:
            raise MetadataError("keyPrefix", "must not contain '||'")


@dataclass(frozen=True, slots=True)
class _Record:
    subject: str
    claims: Mapping[str, object]
    created_at: float
    expires_at: float
    ttl: float
    deadline: float  # 0: no absolute cap

    def encode(self) -> bytes:
        return json.dumps(
            {
                "subject": self.subject,
                "claims": dict(self.claims),
                "createdAt": self.created_at,
                "expiresAt": self.expires_at,
                "ttl": self.ttl,
                "deadline": self.deadline,
            },
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def decode(data: bytes) -> _Record:
        doc = json.loads(data)
        return _Record(
            str(doc["subject"]),
            dict(doc.get("claims") or {}),
            float(doc["createdAt"]),
            float(doc["expiresAt"]),
            float(doc["ttl"]),
            float(doc.get("deadline") or 0),
        )

    def session(self, session_id: str) -> Session:
        return Session(session_id, self.subject, self.claims, self.created_at, self.expires_at)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _index(item: StoredItem | None) -> dict[str, float]:
    if item is None:
        return {}
    try:
        doc = json.loads(item.value)
        return {str(k): float(v) for k, v in doc["sessions"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged index is rebuilt from what comes next


class StateSessionStore:
    """``auth.sessions``: a :class:`SessionStore` over the state block."""

    def __init__(self) -> None:
        self.settings: SessionSettings | None = None
        self._name = ""
        self._prefix = ""
        self._state: SessionStateAccess | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(SessionSettings, metadata.properties)
        self._name = metadata.name
        self._prefix = self.settings.keyPrefix or f"{metadata.name}:"
        _log.info(
            "auth %s: sessions in state store %s, ttl %gs",
            self._name,
            self.settings.stateStore,
            self.settings.ttl,
        )

    def bind(self, state: SessionStateAccess) -> None:
        """Called by the runtime once the state block is up (see the module docstring)."""
        self._state = state

    def features(self) -> frozenset[str]:
        return frozenset()

    async def close(self) -> None:
        self._state = None

    # -- helpers -----------------------------------------------------------------------------
    def _bound(self) -> tuple[SessionStateAccess, str, SessionSettings]:
        if self._state is None or self.settings is None:
            raise ComponentError(f"auth.sessions {self._name} is not bound to a state store")
        return self._state, self.settings.stateStore, self.settings

    def _session_key(self, session_id: str) -> str:
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise AuthError(SESSION_INVALID, "the session id is malformed")
        return f"{self._prefix}s-{_hash(session_id)}"

    def _subject_key(self, subject: str) -> str:
        return f"{self._prefix}u-{_hash(subject)}"

    def _lifetime(self, ttl_seconds: float | None, settings: SessionSettings) -> float:
        if ttl_seconds is None:
            return float(settings.ttl)
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise AuthError(
                BAD_REQUEST,
                f"ttlInSeconds: must be 1 to {MAX_TTL_SECONDS} seconds, got {ttl_seconds}",
            )
        if settings.maxTTL and ttl_seconds > settings.maxTTL:
            raise AuthError(
                BAD_REQUEST,
                f"ttlInSeconds: {ttl_seconds:g} is longer than maxTTL ({settings.maxTTL:g}s) "
                f"of {self._name}",
            )
        return float(ttl_seconds)

    @staticmethod
    def _store_ttl(state: SessionStateAccess, store: str, expires_at: float) -> int | None:
        if not state.expires_keys(store):
            return None
        return max(1, math.ceil(expires_at - time.time()))

    def _parse(self, item: StoredItem | None) -> _Record:
        if item is None:
            raise AuthError(SESSION_INVALID, "the session is unknown, revoked or expired")
        try:
            return _Record.decode(item.value)
        except (ValueError, KeyError, TypeError):
            _log.warning("auth %s: an unreadable session record is refused", self._name)
            raise AuthError(SESSION_INVALID, "the session record is unreadable") from None

    async def _read(self, state: SessionStateAccess, store: str, key: str) -> _Record:
        return self._parse(await state.read(store, key))

    async def _live(self, state: SessionStateAccess, store: str, key: str) -> _Record | None:
        item = await state.read(store, key)
        if item is None:
            return None
        try:
            record = _Record.decode(item.value)
        except (ValueError, KeyError, TypeError):
            _log.warning("auth %s: an unreadable session record is ignored", self._name)
            return None
        return record if record.expires_at > time.time() else None

    async def _pruned(
        self, state: SessionStateAccess, store: str, entries: dict[str, float]
    ) -> dict[str, float]:
        """Entries whose recorded expiry has passed are checked (refresh may have moved it)."""
        now = time.time()
        out: dict[str, float] = {}
        for h, expires in entries.items():
            if expires > now:
                out[h] = expires
                continue
            record = await self._live(state, store, f"{self._prefix}s-{h}")
            if record is not None:
                out[h] = record.expires_at
        return out

    @staticmethod
    def _index_write(key: str, item: StoredItem | None, entries: dict[str, float]) -> StateWrite:
        if not entries:
            return StateWrite(key, None, etag=item.etag if item else None)
        value = json.dumps({"sessions": entries}, separators=(",", ":")).encode()
        if item is None:
            return StateWrite(key, value, insert_only=True)
        return StateWrite(key, value, etag=item.etag)

    async def _update_index(
        self,
        subject: str,
        change: dict[str, float | None],
        before: Sequence[StateWrite] = (),
        after: Sequence[StateWrite] = (),
    ) -> None:
        """Apply ``change`` (hash -> expiry, None removes) to the subject's index.

        With a transactional store ``before`` and ``after`` go into the same
        transaction. Otherwise they are written before and after the index:
        callers order them so that a crash in between leaves at worst an index
        entry without a session (harmless), never a live session that
        "revoke all" would miss.
        """
        state, store, _ = self._bound()
        key = self._subject_key(subject)
        atomic = state.transactional(store)
        if not atomic:
            for write in before:
                await state.write(store, [write])
        for _ in range(INDEX_ATTEMPTS):
            item = await state.read(store, key)
            entries = _index(item)
            for h, expires in change.items():
                if expires is None:
                    entries.pop(h, None)
                else:
                    entries[h] = expires
            entries = await self._pruned(state, store, entries)
            writes = [] if item is None and not entries else [self._index_write(key, item, entries)]
            try:
                if atomic:
                    await state.write(store, [*before, *writes, *after])
                    return
                if writes:
                    await state.write(store, writes)
            except ETagMismatchError:
                continue  # another writer changed the index: read it again
            for write in after:
                await state.write(store, [write])
            return
        raise ComponentError(f"auth {self._name}: the session index keeps changing; try again")

    # -- SessionStore ------------------------------------------------------------------------
    async def create(self, subject: str, claims: Claims, ttl_seconds: float | None) -> Session:
        state, store, settings = self._bound()
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError(BAD_REQUEST, "subject: must be a non-empty string")
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise AuthError(BAD_REQUEST, f"subject: longer than {MAX_SUBJECT_LENGTH} characters")
        lifetime = self._lifetime(ttl_seconds, settings)
        now = time.time()
        deadline = now + float(settings.maxTTL) if settings.maxTTL else 0.0
        expires = min(now + lifetime, deadline) if deadline else now + lifetime
        record = _Record(subject, dict(claims), now, expires, lifetime, deadline)
        try:
            value = record.encode()
        except (TypeError, ValueError) as exc:
            raise AuthError(BAD_REQUEST, f"claims: not JSON-serialisable: {exc}") from None
        session_id = secrets.token_urlsafe(32)
        write = StateWrite(
            self._session_key(session_id),
            value,
            insert_only=True,
            ttl_seconds=self._store_ttl(state, store, expires),
        )
        await self._update_index(subject, {_hash(session_id): expires}, after=[write])
        return record.session(session_id)

    async def validate(self, session_id: str) -> Session:
        state, store, _ = self._bound()
        record = await self._read(state, store, self._session_key(session_id))
        if record.expires_at <= time.time():
            raise AuthError(SESSION_INVALID, "the session has expired")
        return record.session(session_id)

    async def refresh(self, session_id: str, ttl_seconds: float | None) -> Session:
        state, store, settings = self._bound()
        key = self._session_key(session_id)
        for _ in range(INDEX_ATTEMPTS):
            item = await state.read(store, key)
            record = self._parse(item)
            assert item is not None  # _parse refuses a missing record
            now = time.time()
            if record.expires_at <= now:
                raise AuthError(SESSION_INVALID, "the session has expired")
            lifetime = self._lifetime(ttl_seconds, settings) if ttl_seconds else record.ttl
            expires = now + lifetime
            if record.deadline:
                expires = min(expires, record.deadline)
            fresh = _Record(
                record.subject, record.claims, record.created_at, expires, lifetime, record.deadline
            )
            # Guarded by the etag: a session revoked meanwhile is not brought back.
            write = StateWrite(
                key,
                fresh.encode(),
                etag=item.etag,
                ttl_seconds=self._store_ttl(state, store, expires),
            )
            try:
                await state.write(store, [write])
            except ETagMismatchError:
                continue
            return fresh.session(session_id)
        raise ComponentError(f"auth {self._name}: the session keeps changing; try again")

    async def revoke(self, session_id: str) -> None:
        state, store, _ = self._bound()
        key = self._session_key(session_id)
        item = await state.read(store, key)
        if item is None:
            return  # already gone: revoking is idempotent
        try:
            subject = _Record.decode(item.value).subject
        except (ValueError, KeyError, TypeError):
            await state.write(store, [StateWrite(key, None)])
            return
        await self._update_index(subject, {_hash(session_id): None}, before=[StateWrite(key, None)])

    async def revoke_subject(self, subject: str) -> int:
        state, store, _ = self._bound()
        if not isinstance(subject, str) or not subject:
            raise AuthError(BAD_REQUEST, "subject: must be a non-empty string")
        key = self._subject_key(subject)
        atomic = state.transactional(store)
        revoked = 0
        for _ in range(INDEX_ATTEMPTS):
            item = await state.read(store, key)
            if item is None:
                return revoked
            session_keys = [f"{self._prefix}s-{h}" for h in _index(item)]
            live = [k for k in session_keys if await self._live(state, store, k) is not None]
            deletes = [StateWrite(k, None) for k in session_keys]
            drop_index = StateWrite(key, None, etag=item.etag)
            if atomic:
                try:
                    await state.write(store, [*deletes, drop_index])
                except ETagMismatchError:
                    continue  # nothing was applied; a session was added meanwhile
                return revoked + len(live)
            for delete in deletes:
                await state.write(store, [delete])
            revoked += len(live)
            try:
                await state.write(store, [drop_index])
            except ETagMismatchError:
                continue  # sessions added meanwhile are revoked on the next pass
            return revoked
        raise ComponentError(f"auth {self._name}: the session index keeps changing; try again")
