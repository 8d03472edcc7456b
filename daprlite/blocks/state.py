"""The state building block, shared by the HTTP and gRPC transports.

Transports parse their wire format into the request types below and call
:class:`StateAPI`. The block finds the store, validates keys and options,
applies the key prefix, calls the component through the contract in
``components/state/api.py`` under the store's resiliency policy
(``components.<store>.outbound``, see ``blocks/_resilient.py``) and maps
component errors onto the catalogue (``daprlite.errors``). It knows nothing
about HTTP or gRPC.

Only transient store failures are retried and counted by the circuit breaker;
an etag mismatch, an invalid etag, an unsupported capability or bad metadata is
the caller's mistake and answered at once. A timed-out attempt or an open
breaker becomes the operation's usual error (``ERR_STATE_GET`` and so on) with
a message that says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from daprlite import errors
from daprlite.blocks._resilient import CALL_FAILURES, call_component, failure_reason
from daprlite.components.errors import (
    ComponentError,
    ETagInvalidError,
    ETagMismatchError,
    MetadataError,
    NotSupportedError,
)
from daprlite.components.state.api import (
    BulkGetItem,
    BulkStateStore,
    Concurrency,
    Consistency,
    DeleteRequest,
    Feature,
    GetRequest,
    GetResponse,
    QueryableStateStore,
    QueryRequest,
    QueryResponse,
    SetRequest,
    StateStore,
    TransactionalStateStore,
    TransactionOperation,
)
from daprlite.components.state.query import QueryError, parse_query
from daprlite.resiliency import Policy, Resiliency
from daprlite.runtime.registry import ComponentStore, LiveComponent

log = logging.getLogger("daprlite.state")

SEPARATOR = "||"
MAX_TRANSACTION_OPERATIONS = 1000
# Longest TTL accepted (Redis's EXPIRE limit is a signed 64-bit millisecond
# count; 2**31-1 s, about 68 years, fits every store).
MAX_TTL_SECONDS = 2**31 - 1


@dataclass(frozen=True, slots=True)
class SaveItem:
    """One item of a save request, as the API caller sent it (app-visible key)."""

    key: str
    value: bytes
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: str = ""
    consistency: str = ""
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteItem:
    key: str
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    concurrency: str = ""
    consistency: str = ""


@dataclass(frozen=True, slots=True)
class TransactionItem:
    """``operation`` is ``upsert`` or ``delete`` as the caller wrote it."""

    operation: str
    item: SaveItem


def key_prefix(component: LiveComponent, app_id: str, namespace: str) -> str:
    """The stored-key prefix for this store (Dapr's ``keyPrefix`` metadata), '' for none."""
    mode = component.property("keyPrefix", "appid")
    low = mode.lower()
    if low == "appid":
        return app_id
    if low == "name":
        return component.name
    if low == "namespace":
        return f"{namespace}.{app_id}" if namespace else app_id
    if low == "none":
        return ""
    return mode


_CONCURRENCIES = {c.value: c for c in Concurrency}
_CONSISTENCIES = {c.value: c for c in Consistency}


def _concurrency(value: str, where: str) -> Concurrency:
    found = _CONCURRENCIES.get(value or "")
    if found is None:
        raise errors.MALFORMED_REQUEST(
            f"{where}: concurrency must be 'first-write' or 'last-write', got {value!r}"
        )
    return found


def _consistency(value: str, where: str) -> Consistency:
    found = _CONSISTENCIES.get(value or "")
    if found is None:
        raise errors.MALFORMED_REQUEST(
            f"{where}: consistency must be 'eventual' or 'strong', got {value!r}"
        )
    return found


def _ttl(metadata: Mapping[str, str], where: str) -> int | None:
    raw = next((v for k, v in metadata.items() if k.lower() == "ttlinseconds"), None)
    if raw is None or raw == "":
        return None
    try:
        ttl = int(raw)
    except ValueError:
        raise errors.MALFORMED_REQUEST(
            f"{where}: metadata.ttlInSeconds must be an integer number of seconds, got {raw!r}"
        ) from None
    if not -1 <= ttl <= MAX_TTL_SECONDS:
        raise errors.MALFORMED_REQUEST(
            f"{where}: metadata.ttlInSeconds must be -1 (never expire) up to "
            f"{MAX_TTL_SECONDS}, got {ttl}"
        )
    return None if ttl == 0 else ttl


_REFUSALS = (ETagMismatchError, ETagInvalidError, NotSupportedError, MetadataError)


def _refused(exc: ComponentError) -> bool:
    """The caller's mistakes: a retry cannot fix them and they say nothing of the store's health."""
    return isinstance(exc, _REFUSALS)


class StateAPI:
    """Transport-neutral state operations over the sidecar's state stores."""

    def __init__(
        self,
        components: ComponentStore,
        app_id: str,
        namespace: str = "",
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self._app_id = app_id
        self._namespace = namespace
        self._resiliency = resiliency or Resiliency.build(())
        # name -> (live component, store, key prefix, policy or None when it does
        # nothing), resolved once per component: this lookup sits on every request's path.
        self._resolved: dict[str, tuple[LiveComponent, StateStore, str, Policy | None]] = {}

    @property
    def resiliency(self) -> Resiliency:
        return self._resiliency

    @resiliency.setter
    def resiliency(self, value: Resiliency) -> None:
        self._resiliency = value
        self._resolved.clear()  # the cached policies came from the old one

    # -- lookup and keys -----------------------------------------------------------------
    def _store(self, name: str) -> tuple[StateStore, str, Policy | None]:
        comp = self._components.get("state", name)
        cached = self._resolved.get(name)
        if cached is not None and cached[0] is comp:
            return cached[1], cached[2], cached[3]
        if comp is None:
            if not self._components.of_category("state"):
                raise errors.STATE_STORE_NOT_CONFIGURED("state store is not configured")
            raise errors.STATE_STORE_NOT_FOUND(
                f"state store {name} is not found", appID=self._app_id
            )
        prefix = key_prefix(comp, self._app_id, self._namespace)
        if SEPARATOR in prefix:
            raise errors.ILLEGAL_KEY(f"keyPrefix of state store {name} must not contain '||'")
        store = comp.instance
        assert isinstance(store, StateStore)
        found = self._resiliency.component_outbound(name, "statestore")
        policy = None if found.is_noop else found
        self._resolved[name] = (comp, store, prefix, policy)
        return store, prefix, policy

    @staticmethod
    def _full_key(prefix: str, key: str, where: str = "key") -> str:
        if not key:
            raise errors.MALFORMED_REQUEST(f'"{where}" is a required field and must not be empty')
        if SEPARATOR in key:
            raise errors.ILLEGAL_KEY(f"{where} {key!r} must not contain '||'")
        if "\x00" in key:
            raise errors.MALFORMED_REQUEST(f"{where} must not contain a NUL character")
        return f"{prefix}{SEPARATOR}{key}" if prefix else key

    @staticmethod
    def _strip(prefix: str, stored: str) -> str:
        return stored[len(prefix) + len(SEPARATOR) :] if prefix else stored

    def features(self, name: str) -> frozenset[Feature]:
        store, _, _ = self._store(name)
        return store.features()

    # -- operations ---------------------------------------------------------------------
    async def get(
        self, store_name: str, key: str, metadata: Mapping[str, str], consistency: str = ""
    ) -> GetResponse | None:
        store, prefix, policy = self._store(store_name)
        req = GetRequest(
            self._full_key(prefix, key), metadata, _consistency(consistency, "consistency")
        )
        try:
            if policy is None:  # the hot path: no closure, no extra call
                return await store.get(req)
            return await call_component(policy, lambda: store.get(req), _refused)
        except CALL_FAILURES as exc:
            raise errors.STATE_GET(
                f"fail to get {key} from state store {store_name}: {failure_reason(exc)}"
            ) from exc

    async def bulk_get(
        self,
        store_name: str,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        parallelism: int = 0,
    ) -> list[BulkGetItem]:
        store, prefix, policy = self._store(store_name)
        if not keys:
            return []
        full = [self._full_key(prefix, k, "keys[]") for k in keys]
        if isinstance(store, BulkStateStore):
            try:
                items = await call_component(
                    policy, lambda: store.bulk_get(full, metadata), _refused
                )
            except CALL_FAILURES as exc:
                raise errors.STATE_BULK_GET(
                    f"failed getting bulk state from {store_name}: {failure_reason(exc)}"
                ) from exc
        else:
            items = await self._fan_out(store, policy, full, metadata, max(parallelism, 1))
        return [replace(item, key=k) for k, item in zip(keys, items, strict=True)]

    @staticmethod
    async def _fan_out(
        store: StateStore,
        policy: Policy | None,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        parallelism: int,
    ) -> list[BulkGetItem]:
        gate = asyncio.Semaphore(parallelism)

        async def one(key: str) -> BulkGetItem:
            req = GetRequest(key, metadata)
            async with gate:
                try:
                    # One policy run per key, so one slow key cannot fail the others.
                    got = await call_component(policy, lambda: store.get(req), _refused)
                except CALL_FAILURES as exc:
                    return BulkGetItem(key, error=failure_reason(exc))
                if got is None:
                    return BulkGetItem(key)
                return BulkGetItem(key, got.data, got.etag, got.metadata)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    def _set_request(self, prefix: str, item: SaveItem, where: str) -> SetRequest:
        return SetRequest(
            key=self._full_key(prefix, item.key, f"{where}.key"),
            value=item.value,
            etag=item.etag if item.etag else None,
            metadata=item.metadata,
            concurrency=_concurrency(item.concurrency, f"{where}.options"),
            consistency=_consistency(item.consistency, f"{where}.options"),
            content_type=item.content_type,
            ttl_seconds=_ttl(item.metadata, where),
        )

    def _delete_request(
        self, prefix: str, item: DeleteItem | SaveItem, where: str
    ) -> DeleteRequest:
        return DeleteRequest(
            key=self._full_key(prefix, item.key, f"{where}.key"),
            etag=item.etag if item.etag else None,
            metadata=item.metadata,
            concurrency=_concurrency(item.concurrency, f"{where}.options"),
            consistency=_consistency(item.consistency, f"{where}.options"),
        )

    @staticmethod
    def _write_error(entry: errors.CatalogueEntry, exc: Exception, what: str) -> errors.APIError:
        if isinstance(exc, ETagMismatchError):
            return entry.with_status(*errors.ETAG_MISMATCH_STATUS)(
                f"{what}: possible etag mismatch. error from state store: {exc}"
            )
        if isinstance(exc, ETagInvalidError):
            return entry.with_status(*errors.ETAG_INVALID_STATUS)(f"{what}: invalid etag: {exc}")
        return entry(f"{what}: {failure_reason(exc)}")

    async def save(self, store_name: str, items: Sequence[SaveItem]) -> None:
        store, prefix, policy = self._store(store_name)
        reqs = [self._set_request(prefix, it, f"states[{i}]") for i, it in enumerate(items)]
        for req, item in zip(reqs, items, strict=True):
            try:
                await call_component(policy, partial(store.set, req), _refused)
            except CALL_FAILURES as exc:
                raise self._write_error(
                    errors.STATE_SAVE, exc, f"failed saving state in state store {store_name}"
                ) from exc
            except asyncio.CancelledError:
                raise
            log.debug("saved key %s in %s", item.key, store_name)

    async def delete(self, store_name: str, item: DeleteItem) -> None:
        store, prefix, policy = self._store(store_name)
        req = self._delete_request(prefix, item, "delete")
        try:
            await call_component(policy, lambda: store.delete(req), _refused)
        except CALL_FAILURES as exc:
            raise self._write_error(
                errors.STATE_DELETE, exc, f"failed deleting state with key {item.key}"
            ) from exc

    async def delete_bulk(self, store_name: str, items: Sequence[DeleteItem]) -> None:
        store, prefix, policy = self._store(store_name)
        reqs = [self._delete_request(prefix, it, f"states[{i}]") for i, it in enumerate(items)]
        for req in reqs:
            try:
                await call_component(policy, partial(store.delete, req), _refused)
            except CALL_FAILURES as exc:
                raise self._write_error(
                    errors.STATE_BULK_DELETE, exc, f"failed deleting state with key {req.key}"
                ) from exc

    async def transact(
        self, store_name: str, operations: Sequence[TransactionItem], metadata: Mapping[str, str]
    ) -> None:
        store, prefix, policy = self._store(store_name)
        if not isinstance(store, TransactionalStateStore) or (
            Feature.TRANSACTIONAL not in store.features()
        ):
            raise errors.STATE_TRANSACTIONS_NOT_SUPPORTED(
                f"state store {store_name} doesn't support transactions"
            )
        if len(operations) > MAX_TRANSACTION_OPERATIONS:
            raise errors.STATE_TOO_MANY_TRANSACTIONS(
                f"the transaction contains {len(operations)} operations; "
                f"at most {MAX_TRANSACTION_OPERATIONS} are allowed"
            )
        ops: list[TransactionOperation] = []
        for i, op in enumerate(operations):
            where = f"operations[{i}]"
            merged = replace(op.item, metadata={**op.item.metadata, **metadata})
            if op.operation == "upsert":
                ops.append(self._set_request(prefix, merged, f"{where}.request"))
            elif op.operation == "delete":
                ops.append(self._delete_request(prefix, merged, f"{where}.request"))
            else:
                raise errors.STATE_OPERATION_NOT_SUPPORTED(
                    f"{where}.operation: operation type {op.operation!r} is not supported; "
                    "expected 'upsert' or 'delete'"
                )
        if not ops:
            return
        try:
            await call_component(policy, lambda: store.multi(ops, metadata), _refused)
        except CALL_FAILURES as exc:
            raise errors.STATE_TRANSACTION(
                f"error while executing state transaction: {failure_reason(exc)}"
            ) from exc

    async def query(
        self, store_name: str, raw_query: bytes | str, metadata: Mapping[str, str]
    ) -> QueryResponse:
        store, prefix, policy = self._store(store_name)
        if not isinstance(store, QueryableStateStore) or Feature.QUERY_API not in store.features():
            raise errors.STATE_QUERY_NOT_SUPPORTED(
                f"state store {store_name} doesn't support the query API"
            )
        try:
            query = parse_query(raw_query)
        except QueryError as exc:
            raise errors.STATE_QUERY_MALFORMED(
                f"failed query in state store {store_name}: {exc}"
            ) from exc
        req = QueryRequest(query, f"{prefix}{SEPARATOR}" if prefix else "", metadata)
        try:
            res = await call_component(policy, lambda: store.query(req), _refused)
        except CALL_FAILURES as exc:
            raise errors.STATE_QUERY(
                f"failed query in state store {store_name}: {failure_reason(exc)}"
            ) from exc
        results = [replace(r, key=self._strip(prefix, r.key)) for r in res.results]
        return replace(res, results=results)
