"""The records ``auth.sessions`` keeps in a state store, and the MAC that seals each one.

Below :mod:`daprlite.components.auth.sessions` in the request path: the
component builds a :class:`SessionRecord` or a :class:`SubjectIndex`,
:class:`RecordSeal` turns it into the bytes handed to the state block and back,
and :class:`RecordStore` reads them and writes a subject's index under its etag
through the :class:`~daprlite.components.auth.api.SessionStateAccess` view.

Every stored value is ``{"data": "<compact JSON>", "mac": "<hex>"}``, where
``mac`` is HMAC-SHA256, keyed by the component's ``signingKey``, over the state
key and ``data``. An app that shares the state store can therefore neither
mint a record (it lacks the key) nor move a genuine record to the key of
another session id (the key is in the MAC). ``data`` is kept as a string so
that the MAC covers the exact bytes, whatever the store does to JSON values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from daprlite.components.auth.api import Session, SessionStateAccess, StateWrite, StoredItem
from daprlite.components.errors import ETagMismatchError

_log = logging.getLogger("daprlite.component.auth")

# HMAC-SHA256 keys shorter than this are refused at init.
MIN_SIGNING_KEY_BYTES = 32
_DOMAIN = b"daprlite auth.sessions v1\n"


class RecordError(ValueError):
    """A stored value is unreadable, or its MAC does not verify (``forged``)."""

    def __init__(self, problem: str, *, forged: bool) -> None:
        super().__init__(problem)
        self.forged = forged


def digest(text: str) -> str:
    """SHA-256 of ``text``, hex: what a session id or a subject is stored under."""
    return hashlib.sha256(text.encode()).hexdigest()


def new_epoch() -> str:
    """A fresh revocation epoch of a subject (see the ``sessions`` module docstring)."""
    return secrets.token_hex(16)


def _number(doc: Mapping[str, object], name: str) -> float:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number")
    return float(value)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What ``s-<sha256(session id)>`` holds."""

    subject: str
    claims: Mapping[str, object]
    created_at: float
    expires_at: float
    ttl: float
    deadline: float  # 0: no absolute cap
    epoch: str  # the subject's revocation epoch when the session was created

    def to_doc(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "claims": dict(self.claims),
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "ttl": self.ttl,
            "deadline": self.deadline,
            "epoch": self.epoch,
        }

    @staticmethod
    def from_doc(doc: Mapping[str, object]) -> SessionRecord:
        claims = doc.get("claims") or {}
        if not isinstance(claims, dict):
            raise TypeError("claims is not an object")
        return SessionRecord(
            str(doc["subject"]),
            claims,
            _number(doc, "createdAt"),
            _number(doc, "expiresAt"),
            _number(doc, "ttl"),
            _number(doc, "deadline") if doc.get("deadline") else 0.0,
            str(doc.get("epoch") or ""),
        )

    def session(self, session_id: str) -> Session:
        return Session(session_id, self.subject, self.claims, self.created_at, self.expires_at)


@dataclass(slots=True)
class SubjectIndex:
    """What ``u-<sha256(subject)>`` holds: the revocation epoch and the subject's sessions.

    ``sessions`` maps the hash of each session id to ``(createdAt, expiresAt)``;
    ``expiresAt`` is the one known when the entry was last written (a refresh
    does not touch the index), so a past one means "read the record to check".
    """

    epoch: str = ""
    sessions: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_doc(self) -> dict[str, object]:
        return {"epoch": self.epoch, "sessions": {h: list(v) for h, v in self.sessions.items()}}

    @staticmethod
    def from_doc(doc: Mapping[str, object]) -> SubjectIndex:
        entries = doc.get("sessions") or {}
        if not isinstance(entries, dict):
            raise TypeError("sessions is not an object")
        sessions = {str(h): (float(v[0]), float(v[1])) for h, v in entries.items()}
        return SubjectIndex(str(doc.get("epoch") or ""), sessions)

    def oldest(self, count: int, keep: str) -> list[str]:
        """The ``count`` oldest entries (by creation), never ``keep``."""
        ranked = sorted((v[0], h) for h, v in self.sessions.items() if h != keep)
        return [h for _, h in ranked[: max(0, count)]]


class RecordSeal:
    """Encodes and MACs stored values with the component's signing key, and checks them."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, state_key: str, data: str) -> str:
        message = _DOMAIN + state_key.encode() + b"\n" + data.encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def seal(self, state_key: str, doc: Mapping[str, object]) -> bytes:
        """The stored bytes for ``doc`` under ``state_key``.

        Raises ValueError (NaN, Infinity, nesting too deep) or TypeError (not JSON)."""
        try:
            data = json.dumps(doc, separators=(",", ":"), allow_nan=False)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        envelope = {"data": data, "mac": self._mac(state_key, data)}
        return json.dumps(envelope, separators=(",", ":")).encode()

    def open(self, state_key: str, value: bytes) -> dict[str, object]:
        """The document sealed under ``state_key``; RecordError if unreadable or not ours."""
        try:
            envelope = json.loads(value)
            data, mac = envelope["data"], envelope["mac"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise RecordError("the stored value is not a sealed record", forged=True) from None
        if not isinstance(data, str) or not isinstance(mac, str):
            raise RecordError("the stored value is not a sealed record", forged=True)
        if not hmac.compare_digest(mac.encode(), self._mac(state_key, data).encode()):
            raise RecordError("the record's MAC does not verify", forged=True)
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            raise RecordError("the sealed record is not JSON", forged=False) from None
        if not isinstance(doc, dict):
            raise RecordError("the sealed record is not an object", forged=False)
        return doc

    def open_record(self, state_key: str, value: bytes) -> SessionRecord:
        """The session record sealed under ``state_key``; RecordError otherwise."""
        doc = self.open(state_key, value)
        try:
            return SessionRecord.from_doc(doc)
        except (ValueError, KeyError, TypeError):
            raise RecordError("the session record lacks a field", forged=False) from None

    def open_index(self, state_key: str, value: bytes) -> SubjectIndex:
        """The subject index sealed under ``state_key``; RecordError otherwise."""
        doc = self.open(state_key, value)
        try:
            return SubjectIndex.from_doc(doc)
        except (ValueError, KeyError, TypeError, IndexError):
            raise RecordError("the subject index is malformed", forged=False) from None


class RecordStore:
    """One ``auth.sessions`` component's records in its state store."""

    def __init__(
        self, component: str, prefix: str, seal: RecordSeal, state: SessionStateAccess, store: str
    ) -> None:
        self._component = component
        self._prefix = prefix
        self._seal = seal
        self.state = state
        self.store = store

    def record_key(self, session_hash: str) -> str:
        return f"{self._prefix}s-{session_hash}"

    def subject_key(self, subject: str) -> str:
        return f"{self._prefix}u-{digest(subject)}"

    def seal(self, key: str, doc: Mapping[str, object]) -> bytes:
        return self._seal.seal(key, doc)

    async def read(self, key: str) -> StoredItem | None:
        return await self.state.read(self.store, key)

    async def write(self, *writes: StateWrite) -> None:
        """Each write on its own (no transaction needed)."""
        for write in writes:
            await self.state.write(self.store, [write])

    def open_record(self, key: str, item: StoredItem | None) -> SessionRecord | None:
        """The record under ``key``; None when missing or refused (logged, never with the id)."""
        try:
            return None if item is None else self._seal.open_record(key, item.value)
        except RecordError as exc:
            _log.warning("auth %s: a session record is refused: %s", self._component, exc)
            return None

    def open_index(self, key: str, item: StoredItem | None) -> SubjectIndex | None:
        """The subject's index (empty when missing); None when refused (logged)."""
        try:
            return SubjectIndex() if item is None else self._seal.open_index(key, item.value)
        except RecordError as exc:
            _log.warning("auth %s: a subject index is refused: %s", self._component, exc)
            return None

    async def live(self, session_hash: str) -> SessionRecord | None:
        key = self.record_key(session_hash)
        record = self.open_record(key, await self.read(key))
        return record if record is not None and record.expires_at > time.time() else None

    async def prune(self, index: SubjectIndex) -> None:
        """Drop entries whose recorded expiry has passed, unless a refresh moved it."""
        now = time.time()
        for h, (created, expires) in list(index.sessions.items()):
            if expires > now:
                continue
            record = await self.live(h)
            if record is None:
                del index.sessions[h]
            else:
                index.sessions[h] = (created, record.expires_at)

    async def commit(
        self,
        key: str,
        item: StoredItem | None,
        index: SubjectIndex,
        before: Sequence[StateWrite] = (),
        after: Sequence[StateWrite] = (),
    ) -> bool:
        """Write ``index`` under the etag of ``item``; False when another writer got there first.

        With a transactional store ``before`` and ``after`` go into the same
        transaction. Otherwise they are written before and after the index
        (``before`` again on every attempt, so it must be idempotent). An index
        with neither sessions nor an epoch is deleted rather than written.
        """
        writes: list[StateWrite] = []
        if index.sessions or index.epoch:
            value = self._seal.seal(key, index.to_doc())
            etag = item.etag if item is not None else None
            writes.append(StateWrite(key, value, etag=etag, insert_only=item is None))
        elif item is not None:
            writes.append(StateWrite(key, None, etag=item.etag))
        try:
            if self.state.transactional(self.store):
                await self.state.write(self.store, [*before, *writes, *after])
                return True
            await self.write(*before)
            if writes:
                await self.state.write(self.store, writes)
        except ETagMismatchError:
            return False  # the index changed since it was read: read it again
        await self.write(*after)
        return True
