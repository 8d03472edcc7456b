"""The state store contract: what ``blocks.state`` knows about any backend.

A store implements the small required :class:`StateStore` Protocol. Optional
capabilities are separate Protocols (:class:`BulkStateStore`,
:class:`TransactionalStateStore`, :class:`QueryableStateStore`) and are
advertised through :class:`Feature` flags named as Dapr names them; the
metadata API reports those flags and the conformance suite checks that a store
advertises exactly what it implements.

Keys reaching a store already carry the key prefix (``app||key``); values are
opaque bytes, stored and returned verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from daprlite.components.metadata import ComponentMetadata
from daprlite.components.state.query import Query


class Feature(StrEnum):
    ETAG = "ETAG"
    TRANSACTIONAL = "TRANSACTIONAL"
    QUERY_API = "QUERY_API"
    TTL = "TTL"
    DELETE_WITH_PREFIX = "DELETE_WITH_PREFIX"
    PARTITION_KEY = "PARTITION_KEY"
    KEYS_LIKE = "KEYS_LIKE"


class Concurrency(StrEnum):
    UNSPECIFIED = ""
    FIRST_WRITE = "first-write"
    LAST_WRITE = "last-write"


class Consistency(StrEnum):
    UNSPECIFIED = ""
    EVENTUAL = "eventual"
    STRONG = "strong"


@dataclass(frozen=True, slots=True)
class GetRequest:
    key: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    consistency: Consistency = Consistency.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class GetResponse:
    """A stored item. ``metadata`` may carry ``ttlExpireTime`` (RFC 3339, UTC)."""

    data: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class SetRequest:
    """Upsert one key.

    ``etag`` set: write only if the stored etag equals it (missing key = mismatch).
    No etag and FIRST_WRITE: insert only. Otherwise: upsert.
    ``ttl_seconds``: None = no TTL (or the store default); -1 = never expire;
    positive = expire after that many seconds. The block validates it.
    """

    key: str
    value: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency = Concurrency.UNSPECIFIED
    consistency: Consistency = Consistency.UNSPECIFIED
    content_type: str | None = None
    ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    """Delete one key. With ``etag``: only if it matches (missing key = mismatch)."""

    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: Concurrency = Concurrency.UNSPECIFIED
    consistency: Consistency = Consistency.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class BulkGetItem:
    """One result of a bulk get: found (data+etag), missing (neither) or failed (error)."""

    key: str
    data: bytes | None = None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A parsed query, restricted to keys that start with ``key_prefix``."""

    query: Query
    key_prefix: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueryItem:
    key: str  # the full stored key; the block strips the prefix
    data: bytes
    etag: str | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class QueryResponse:
    results: Sequence[QueryItem]
    token: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


TransactionOperation = SetRequest | DeleteRequest


@runtime_checkable
class StateStore(Protocol):
    """The required contract. Errors: ETagMismatchError, ETagInvalidError, ComponentError."""

    async def init(self, metadata: ComponentMetadata) -> None: ...

    def features(self) -> frozenset[Feature]: ...

    async def get(self, req: GetRequest) -> GetResponse | None:
        """The item, or None when the key is missing or expired."""
        ...

    async def set(self, req: SetRequest) -> None: ...

    async def delete(self, req: DeleteRequest) -> None:
        """Delete; deleting a missing key without an etag is not an error."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class BulkStateStore(Protocol):
    """A store with a native multi-key read (one round trip)."""

    async def bulk_get(
        self, keys: Sequence[str], metadata: Mapping[str, str]
    ) -> list[BulkGetItem]: ...


@runtime_checkable
class TransactionalStateStore(Protocol):
    """All-or-nothing execution of upserts and deletes (Feature.TRANSACTIONAL)."""

    async def multi(
        self, operations: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None: ...


@runtime_checkable
class QueryableStateStore(Protocol):
    """Filter/sort/page over JSON values (Feature.QUERY_API)."""

    async def query(self, req: QueryRequest) -> QueryResponse: ...
