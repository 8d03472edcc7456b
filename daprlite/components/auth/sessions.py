"""``auth.sessions``: opaque session ids kept in one of the sidecar's state stores.

The auth block (``blocks/auth.py``) calls this component through the
:class:`~daprlite.components.auth.api.SessionStore` contract for
``/v1.0-alpha1/auth/{name}/sessions...`` and the gRPC ``Auth`` service. The
component owns no backend: after init the runtime binds it to the state block
(:meth:`StateSessionStore.bind`), and every record goes through the state
store named by ``stateStore``, with that store's key prefix, resiliency and
TTL support, as an app's own state calls would.

Records, under ``keyPrefix`` (default ``<component name>:``), each sealed with
an HMAC-SHA256 keyed by ``signingKey`` over its state key and content
(``_session_records.py``), so an app writing the same store cannot mint or
move a session; a record that does not verify is refused and logged:

- ``s-<sha256(session id)>``: ``{subject, claims, createdAt, expiresAt, ttl,
  deadline, epoch}``. Only the hash of the id is stored, so a dump of the
  store holds no usable session id.
- ``u-<sha256(subject)>``: the subject's index ``{epoch, sessions: {hash:
  [createdAt, expiresAt]}}``, updated under its etag (in one transaction with
  the session records when the store is transactional).

**Revoking all sessions of a subject is final, with or without transactions.**
A session is valid only while its ``epoch`` equals the epoch in its subject's
index (``""`` while there is no index). "Revoke all" replaces the epoch with
a fresh random one under the index's etag, *then* deletes the records it
lists. ``create`` writes the index entry first, under the etag of the index
it read, and the record second, carrying that index's epoch. So a revoke-all
that lands between the two writes has already changed the epoch, and the
record written afterwards is refused; a revoke-all that lands before the
index write makes that write fail its etag, and ``create`` starts again with
the new epoch. Deleting the records is clean-up; the epoch is what revokes.
An index that had an epoch is therefore never deleted. An index whose MAC
does not verify is replaced by one with a fresh epoch, which fails closed:
every session of that subject is refused.

A subject holds at most ``maxSessionsPerSubject`` sessions (default 100): when
``create`` goes past it, the oldest sessions of the subject (by creation) are
revoked. Entries whose recorded expiry has passed are pruned whenever the
index is written (a refresh does not update the index, so the record is read
to check).

Expiry slides: :meth:`refresh` moves ``expiresAt`` to now + ttl, never past
``deadline`` (creation + ``maxTTL``, when set). ``expiresAt`` is checked on
every read, so an expired session is refused even by a store without TTL; a
store with TTL also drops the record itself.

The MAC stops forgery, not replay: an app that can read and write the same
state store can save a genuine record and its subject's index and write both
back later, undoing a revocation.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from dataclasses import dataclass, replace

from daprlite.components.auth._session_records import (
    MIN_SIGNING_KEY_BYTES,
    RecordSeal,
    RecordStore,
    SessionRecord,
    SubjectIndex,
    digest,
    new_epoch,
)
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
MAX_SESSIONS_PER_SUBJECT = 100_000
# How often an etag-guarded update of a subject's index is tried before giving up.
INDEX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True, repr=False)
class SessionSettings:
    """Component metadata of ``auth.sessions`` (names are case-insensitive)."""

    stateStore: str = setting(required=True, doc="Name of the state store that keeps sessions.")
    signingKey: str = setting(
        required=True,
        doc=f"Secret (at least {MIN_SIGNING_KEY_BYTES} bytes) that MACs every stored record; "
        "use secretKeyRef.",
    )
    ttl: Duration = setting(Duration(3600), doc="Default session lifetime (sliding on refresh).")
    maxTTL: Duration = setting(
        Duration(0), doc="Absolute cap from creation, however often refreshed; 0 means none."
    )
    maxSessionsPerSubject: int = setting(
        100, doc="Sessions one subject may hold; past it the oldest is revoked."
    )
    keyPrefix: str = setting("", doc="Prefix of the state keys; default '<component name>:'.")
    validator: str = setting(
        "", doc="Name of the auth.jwt component that checks tokens sessions are created from."
    )

    def __post_init__(self) -> None:
        if len(self.signingKey.encode()) < MIN_SIGNING_KEY_BYTES:
            raise MetadataError(
                "signingKey",
                f"must be at least {MIN_SIGNING_KEY_BYTES} bytes (a random secret from a "
                f"secret store), got {len(self.signingKey.encode())}",
            )
        if not 1 <= self.ttl <= MAX_TTL_SECONDS:
            raise MetadataError("ttl", f"must be at least 1s, got {self.ttl:g}s")
        if self.maxTTL and not self.ttl <= self.maxTTL <= MAX_TTL_SECONDS:
            raise MetadataError("maxTTL", f"must be at least ttl ({self.ttl:g}s) or 0 for none")
        if not 1 <= self.maxSessionsPerSubject <= MAX_SESSIONS_PER_SUBJECT:
            raise MetadataError(
                "maxSessionsPerSubject",
                f"must be 1 to {MAX_SESSIONS_PER_SUBJECT}, got {self.maxSessionsPerSubject}",
            )
        if "||" in self.keyPrefix:
            raise MetadataError("keyPrefix", "must not contain '||'")

    def __repr__(self) -> str:  # the signing key is a secret: never in a repr
        return (
            f"SessionSettings(stateStore={self.stateStore!r}, signingKey='***', "
            f"ttl={self.ttl:g}, maxTTL={self.maxTTL:g}, "
            f"maxSessionsPerSubject={self.maxSessionsPerSubject}, keyPrefix={self.keyPrefix!r})"
        )


class StateSessionStore:
    """``auth.sessions``: a :class:`SessionStore` over the state block."""

    def __init__(self) -> None:
        self.settings: SessionSettings | None = None
        self._name = ""
        self._prefix = ""
        self._seal = RecordSeal(b"")
        self._records: RecordStore | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(SessionSettings, metadata.properties)
        self._name = metadata.name
        self._prefix = self.settings.keyPrefix or f"{metadata.name}:"
        self._seal = RecordSeal(self.settings.signingKey.encode())
        _log.info(
            "auth %s: sessions in state store %s, ttl %gs",
            self._name,
            self.settings.stateStore,
            self.settings.ttl,
        )

    def bind(self, state: SessionStateAccess) -> None:
        """Called by the runtime once the state block is up (see the module docstring)."""
        if self.settings is not None:
            store = self.settings.stateStore
            self._records = RecordStore(self._name, self._prefix, self._seal, state, store)

    def features(self) -> frozenset[str]:
        return frozenset()

    async def close(self) -> None:
        self._records = None

    # -- helpers -----------------------------------------------------------------------------
    def _bound(self) -> tuple[RecordStore, SessionSettings]:
        if self._records is None or self.settings is None:
            raise ComponentError(f"auth.sessions {self._name} is not bound to a state store")
        return self._records, self.settings

    def _session_key(self, records: RecordStore, session_id: str) -> str:
        if not isinstance(session_id, str) or not _SESSION_ID.match(session_id):
            raise AuthError(SESSION_INVALID, "the session id is malformed")
        return records.record_key(digest(session_id))

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
    def _store_ttl(records: RecordStore, expires_at: float) -> int | None:
        if not records.state.expires_keys(records.store):
            return None
        return max(1, math.ceil(expires_at - time.time()))

    @staticmethod
    async def _valid(records: RecordStore, key: str, item: StoredItem | None) -> SessionRecord:
        """The record in ``item`` if it is live and its epoch is current; AuthError otherwise."""
        record = records.open_record(key, item)
        if record is None:
            raise AuthError(SESSION_INVALID, "the session is unknown, revoked or expired")
        if record.expires_at <= time.time():
            raise AuthError(SESSION_INVALID, "the session has expired")
        index_key = records.subject_key(record.subject)
        index = records.open_index(index_key, await records.read(index_key))
        if index is None or index.epoch != record.epoch:
            raise AuthError(SESSION_INVALID, "the session is unknown, revoked or expired")
        return record

    def _give_up(self) -> ComponentError:
        return ComponentError(f"auth {self._name}: the session index keeps changing; try again")

    # -- SessionStore ------------------------------------------------------------------------
    async def create(self, subject: str, claims: Claims, ttl_seconds: float | None) -> Session:
        records, settings = self._bound()
        if not isinstance(subject, str) or not subject.strip():
            raise AuthError(BAD_REQUEST, "subject: must be a non-empty string")
        if len(subject) > MAX_SUBJECT_LENGTH:
            raise AuthError(BAD_REQUEST, f"subject: longer than {MAX_SUBJECT_LENGTH} characters")
        lifetime = self._lifetime(ttl_seconds, settings)
        now = time.time()
        deadline = now + float(settings.maxTTL) if settings.maxTTL else 0.0
        expires = min(now + lifetime, deadline) if deadline else now + lifetime
        session_id = secrets.token_urlsafe(32)
        h = digest(session_id)
        key = records.record_key(h)
        try:
            records.seal(key, {"claims": dict(claims)})
        except (TypeError, ValueError) as exc:
            raise AuthError(BAD_REQUEST, f"claims: not plain JSON: {exc}") from None
        index_key = records.subject_key(subject)
        for _ in range(INDEX_ATTEMPTS):
            item = await records.read(index_key)
            # A refused index is replaced with a fresh epoch: its sessions are all refused.
            index = records.open_index(index_key, item) or SubjectIndex(new_epoch())
            index.sessions[h] = (now, expires)
            await records.prune(index)
            evicted = index.oldest(len(index.sessions) - settings.maxSessionsPerSubject, keep=h)
            for old in evicted:
                del index.sessions[old]
            record = SessionRecord(
                subject, dict(claims), now, expires, lifetime, deadline, index.epoch
            )
            write = StateWrite(
                key,
                records.seal(key, record.to_doc()),
                insert_only=True,
                ttl_seconds=self._store_ttl(records, expires),
            )
            # The record goes after the index: see "Revoking all ..." in the module docstring.
            evictions = [StateWrite(records.record_key(old), None) for old in evicted]
            if await records.commit(index_key, item, index, after=[write, *evictions]):
                if evicted:
                    _log.info(
                        "auth %s: a subject went past maxSessionsPerSubject (%d); "
                        "its %d oldest sessions are revoked",
                        self._name,
                        settings.maxSessionsPerSubject,
                        len(evicted),
                    )
                return record.session(session_id)
        raise self._give_up()

    async def validate(self, session_id: str) -> Session:
        records, _ = self._bound()
        key = self._session_key(records, session_id)
        record = await self._valid(records, key, await records.read(key))
        return record.session(session_id)

    async def refresh(self, session_id: str, ttl_seconds: float | None) -> Session:
        records, settings = self._bound()
        key = self._session_key(records, session_id)
        for _ in range(INDEX_ATTEMPTS):
            item = await records.read(key)
            record = await self._valid(records, key, item)
            assert item is not None  # _valid refuses a missing record
            lifetime = self._lifetime(ttl_seconds, settings) if ttl_seconds else record.ttl
            expires = time.time() + lifetime
            if record.deadline:
                expires = min(expires, record.deadline)
            fresh = replace(record, expires_at=expires, ttl=lifetime)
            # Guarded by the etag: a session revoked meanwhile is not brought back.
            write = StateWrite(
                key,
                records.seal(key, fresh.to_doc()),
                etag=item.etag,
                ttl_seconds=self._store_ttl(records, expires),
            )
            try:
                await records.write(write)
            except ETagMismatchError:
                continue
            return fresh.session(session_id)
        raise ComponentError(f"auth {self._name}: the session keeps changing; try again")

    async def revoke(self, session_id: str) -> None:
        records, _ = self._bound()
        key = self._session_key(records, session_id)
        item = await records.read(key)
        record = records.open_record(key, item)
        delete = StateWrite(key, None)
        if record is None:
            if item is not None:
                await records.write(delete)
            return  # already gone: revoking is idempotent
        index_key = records.subject_key(record.subject)
        for _ in range(INDEX_ATTEMPTS):
            index_item = await records.read(index_key)
            index = records.open_index(index_key, index_item)
            if index is None:  # a refused index is left for create to replace
                await records.write(delete)
                return
            index.sessions.pop(digest(session_id), None)
            await records.prune(index)
            # The record goes first: a crash in between leaves an entry without a record.
            if await records.commit(index_key, index_item, index, before=[delete]):
                return
        raise self._give_up()

    async def revoke_subject(self, subject: str) -> int:
        records, _ = self._bound()
        if not isinstance(subject, str) or not subject:
            raise AuthError(BAD_REQUEST, "subject: must be a non-empty string")
        key = records.subject_key(subject)
        for _ in range(INDEX_ATTEMPTS):
            item = await records.read(key)
            if item is None:
                return 0  # never had a session, or none since the last clean-up
            index = records.open_index(key, item) or SubjectIndex()
            live = [h for h in index.sessions if await records.live(h) is not None]
            # The new epoch revokes; deleting the records afterwards is clean-up.
            deletes = [StateWrite(records.record_key(h), None) for h in index.sessions]
            if await records.commit(key, item, SubjectIndex(new_epoch()), after=deletes):
                return len(live)
        raise self._give_up()
