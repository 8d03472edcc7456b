"""``state.in-memory``: a per-process state store.

The smallest complete state store, and the template for the others: typed
settings, an init that decodes them, explicit features, and a close. Values
live in a dict guarded by one asyncio lock, which makes every operation and
every transaction atomic within the sidecar. Etags are random UUIDs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from daprlite.components.errors import ETagMismatchError
from daprlite.components.metadata import ComponentMetadata, decode
from daprlite.components.state.api import (
    BulkGetItem,
    Concurrency,
    DeleteRequest,
    Feature,
    GetRequest,
    GetResponse,
    QueryItem,
    QueryRequest,
    QueryResponse,
    SetRequest,
    TransactionOperation,
)
from daprlite.components.state.etag import check_uuid_etag, new_etag
from daprlite.components.state.query import apply_sort, evaluate
from daprlite.components.state.values import json_document


@dataclass(frozen=True, slots=True)
class InMemorySettings:
    """``state.in-memory`` takes no settings."""


@dataclass(slots=True)
class _Entry:
    value: bytes
    etag: str
    expires_at: float | None  # time.time() deadline, None = never

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class InMemoryStateStore:
    """A dict behind a lock: ETAG, TRANSACTIONAL, TTL and QUERY_API."""

    def __init__(self) -> None:
        self._items: dict[str, _Entry] = {}
        self._lock = asyncio.Lock()
        self.settings = InMemorySettings()

    async def init(self, metadata: ComponentMetadata) -> None:
        self.settings = decode(InMemorySettings, metadata.properties)

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    async def close(self) -> None:
        self._items.clear()

    # -- helpers -----------------------------------------------------------------
    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._items.get(key)
        if entry is not None and entry.expired(now):
            del self._items[key]
            return None
        return entry

    def _response(self, entry: _Entry) -> GetResponse:
        meta: dict[str, str] = {}
        if entry.expires_at is not None:
            meta["ttlExpireTime"] = (
                datetime.fromtimestamp(entry.expires_at, UTC).isoformat().replace("+00:00", "Z")
            )
        return GetResponse(entry.value, entry.etag, meta)

    def _check_set(self, req: SetRequest, now: float) -> None:
        current = self._live(req.key, now)
        if req.etag is not None:
            check_uuid_etag(req.etag)
            if current is None or current.etag != req.etag:
                raise ETagMismatchError(f"etag mismatch for key {req.key!r}")
        elif req.concurrency == Concurrency.FIRST_WRITE and current is not None:
            raise ETagMismatchError(f"key {req.key!r} already exists (first-write)")

    def _check_delete(self, req: DeleteRequest, now: float) -> None:
        if req.etag is not None:
            check_uuid_etag(req.etag)
            current = self._live(req.key, now)
            if current is None or current.etag != req.etag:
                raise ETagMismatchError(f"etag mismatch for key {req.key!r}")

    def _apply_set(self, req: SetRequest, now: float) -> None:
        expires = None
        if req.ttl_seconds is not None and req.ttl_seconds > 0:
            expires = now + req.ttl_seconds
        self._items[req.key] = _Entry(req.value, new_etag(), expires)

    # -- contract -------------------------------------------------------------------
    async def get(self, req: GetRequest) -> GetResponse | None:
        entry = self._live(req.key, time.time())
        return None if entry is None else self._response(entry)

    async def bulk_get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> list[BulkGetItem]:
        now = time.time()
        out = []
        for key in keys:
            entry = self._live(key, now)
            if entry is None:
                out.append(BulkGetItem(key))
            else:
                r = self._response(entry)
                out.append(BulkGetItem(key, r.data, r.etag, r.metadata))
        return out

    async def set(self, req: SetRequest) -> None:
        async with self._lock:
            now = time.time()
            self._check_set(req, now)
            self._apply_set(req, now)

    async def delete(self, req: DeleteRequest) -> None:
        async with self._lock:
            now = time.time()
            self._check_delete(req, now)
            self._items.pop(req.key, None)

    async def multi(
        self, operations: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        async with self._lock:
            now = time.time()
            # Check everything first, then apply: all or nothing.
            for op in operations:
                if isinstance(op, SetRequest):
                    self._check_set(op, now)
                else:
                    self._check_delete(op, now)
            for op in operations:
                if isinstance(op, SetRequest):
                    self._apply_set(op, now)
                else:
                    self._items.pop(op.key, None)

    async def query(self, req: QueryRequest) -> QueryResponse:
        now = time.time()
        rows: list[tuple[str, _Entry, object]] = []
        for key in list(self._items):
            entry = self._live(key, now)
            if entry is None or not key.startswith(req.key_prefix):
                continue
            doc = json_document(entry.value)
            if doc is not None and evaluate(req.query.filter, doc):
                rows.append((key, entry, doc))
        rows.sort(key=lambda r: r[0])
        apply_sort(rows, req.query.sort, lambda r: r[2])
        q = req.query
        page = rows[q.offset : q.offset + q.limit] if q.limit else rows[q.offset :]
        token = str(q.offset + len(page)) if q.limit and q.offset + len(page) < len(rows) else ""
        return QueryResponse([QueryItem(k, e.value, e.etag) for k, e, _ in page], token)
