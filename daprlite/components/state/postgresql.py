"""``state.postgresql`` (alias ``state.postgres``): state in a PostgreSQL or CockroachDB table.

``blocks.state`` calls this store with prefixed keys and opaque values; it runs
the SQL of ``_postgresql_sql`` through an asyncpg pool. Every conditional
write is one atomic statement whose row count says whether it applied, and a
transaction (``multi``) runs those same statements inside one database
transaction, so a mismatch anywhere rolls everything back.

Etags are random UUIDs written with each row, not PostgreSQL's ``xmin``:
CockroachDB has no ``xmin``; ``xmin`` is a 32-bit transaction id that wraps
around, so a stale etag could match again; and every row written by one
transaction shares it, so it does not identify one version of one key. A UUID
made by the sidecar is portable, unique, and says nothing about the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg

from daprlite.components._postgresql_common import (
    DRIVER_ERRORS,
    PostgreSQLConnectionSettings,
    close_pool,
    open_pool,
    parse_connection,
)
from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.state._postgresql_sql import (
    CLEANUP_BATCH,
    SCHEMA_VERSION,
    Statements,
    json_column,
    quote_table,
    rows_affected,
    select_query,
)
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

log = logging.getLogger("daprlite.component.state")
T = TypeVar("T")

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
_DDL_RACES = (
    asyncpg.UniqueViolationError,
    asyncpg.DuplicateTableError,
    asyncpg.DuplicateObjectError,
)
_INLINE_JSON_BYTES = 64 * 1024  # larger values are JSON-decoded in a worker thread


@dataclass(frozen=True, slots=True, repr=False)  # repr=False keeps the redacting __repr__
class PostgreSQLSettings(PostgreSQLConnectionSettings):
    """``state.postgresql`` v1 metadata; names as in Dapr, matched case-insensitively.

    The connection fields (``connectionString``, ``timeout``, ``maxConns``, ...)
    are shared with ``bindings.postgresql``, in
    :class:`~daprlite.components._postgresql_common.PostgreSQLConnectionSettings`.
    """

    tableName: str = setting(
        "state", doc="Table holding the state: 'table' or 'schema.table'; created if missing."
    )
    metadataTableName: str = setting(
        "dapr_metadata", doc="Table holding the schema version: 'table' or 'schema.table'."
    )
    cleanupInterval: Duration = setting(
        Duration(3600),
        aliases=("cleanupIntervalInSeconds",),
        doc="How often expired rows are deleted; 0 or less disables the cleanup.",
    )

    def __post_init__(self) -> None:
        for name in ("tableName", "metadataTableName"):
            try:
                quote_table(getattr(self, name))
            except ValueError as exc:
                raise MetadataError(name, str(exc)) from None
        PostgreSQLConnectionSettings.__post_init__(self)  # no zero-argument super() with slots


class PostgreSQLStateStore:
    """A table per store: ETAG, TRANSACTIONAL, TTL and QUERY_API; native bulk get."""

    def __init__(self) -> None:
        self.settings = PostgreSQLSettings()
        self._name = ""
        self._pool: asyncpg.Pool | None = None
        self._sql = Statements.for_tables("state", "dapr_metadata")
        self._stack = AsyncExitStack()

    # -- lifecycle -------------------------------------------------------------------
    async def init(self, metadata: ComponentMetadata) -> None:
        self._name = metadata.name
        self.settings = s = decode(PostgreSQLSettings, metadata.properties)
        self._sql = Statements.for_tables(s.tableName, s.metadataTableName)
        what = f"state store {self._name!r}"
        options = parse_connection(s, what=what, log=log)
        try:
            self._pool = await open_pool(s, options, what=what)
            self._stack.push_async_callback(close_pool, self._pool)
            await self._migrate()
        except BaseException:
            await self._stack.aclose()
            self._pool = None
            raise
        if s.cleanupInterval > 0:
            task = asyncio.create_task(self._cleanup_loop(), name=f"{self._name}-state-cleanup")
            self._stack.push_async_callback(self._stop_task, task)
        log.info(
            "state store %r: PostgreSQL %s, table %s",
            self._name,
            options.describe(),
            s.tableName,
        )

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    async def close(self) -> None:
        """Stop the cleanup task, then close the pool."""
        await self._stack.aclose()
        self._pool = None

    @staticmethod
    async def _stop_task(task: asyncio.Task[None]) -> None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task

    async def _migrate(self) -> None:
        # Every schema statement is idempotent (IF NOT EXISTS) and all of them run
        # at each start: two sidecars may start together without advisory locks
        # (CockroachDB has none), and a table dropped behind our back comes back.
        # The version row lets a future schema change know what it upgrades, and
        # stops an older daprlite from using a table a newer one has changed.
        version_key = f"state-schema-version:{self.settings.tableName}"

        async def migrate(conn: asyncpg.Connection) -> None:
            await self._ddl(conn, self._sql.create_metadata)
            stored = await conn.fetchval(self._sql.get_version, version_key)
            if stored is not None and (not stored.isdigit() or int(stored) > SCHEMA_VERSION):
                raise ComponentError(
                    f"state store {self._name!r}: table {self.settings.tableName!r} has schema "
                    f"version {stored!r} in {self.settings.metadataTableName!r}; this daprlite "
                    f"knows versions up to {SCHEMA_VERSION}"
                )
            try:
                for statement in self._sql.schema:
                    await self._ddl(conn, statement)
                await conn.fetch(self._sql.check_columns)
            except asyncpg.UndefinedColumnError as exc:
                raise ComponentError(
                    f"state store {self._name!r}: table {self.settings.tableName!r} exists but "
                    f"was not created by daprlite ({exc}); choose another tableName"
                ) from exc
            await conn.execute(self._sql.set_version, version_key, str(SCHEMA_VERSION))

        await self._run("create the schema", migrate)

    @staticmethod
    async def _ddl(conn: asyncpg.Connection, statement: str) -> None:
        # Two concurrent CREATE … IF NOT EXISTS can still collide in PostgreSQL's
        # catalogue; the loser's retry then sees the object and does nothing.
        for attempt in range(3):
            try:
                await conn.execute(statement)
                return
            except _DDL_RACES:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05 * (attempt + 1))

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cleanupInterval)
            try:
                deleted = 0
                while True:  # in batches, so no single statement grows without bound
                    batch = await self._run("delete expired rows", self._delete_expired)
                    deleted += batch
                    if batch < CLEANUP_BATCH:
                        break
                if deleted:
                    log.debug("state store %r: deleted %d expired rows", self._name, deleted)
            except ComponentError as exc:
                log.warning("state store %r: cleanup of expired rows failed: %s", self._name, exc)

    async def _delete_expired(self, conn: asyncpg.Connection) -> int:
        return rows_affected(await conn.execute(self._sql.delete_expired))

    # -- plumbing ----------------------------------------------------------------------
    async def _run(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection within the timeout; retry serialisation failures.

        CockroachDB (and PostgreSQL on a deadlock) may ask for a transaction to
        be retried; the whole unit of work then runs again, which is safe
        because the failed attempt committed nothing.
        """
        if self._pool is None:
            raise ComponentError(f"state store {self._name!r} is not initialised or closed")
        pool, timeout = self._pool, self.settings.timeout
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(5):
                    try:
                        async with pool.acquire() as conn:
                            return await work(conn)
                    except _RETRYABLE:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.01 * 2**attempt)
        except TimeoutError as exc:
            raise ComponentError(
                f"state store {self._name!r}: {what} timed out after {timeout:g}s"
            ) from exc
        except DRIVER_ERRORS as exc:
            raise ComponentError(
                f"state store {self._name!r}: {what} failed: {type(exc).__name__}: {exc}"
            ) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _metadata(expires_at: datetime | None) -> dict[str, str]:
        if expires_at is None:
            return {}
        return {"ttlExpireTime": expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}

    @staticmethod
    async def _document(value: bytes) -> str | None:
        """The ``value_json`` column; big values are decoded off the event loop."""
        if len(value) < _INLINE_JSON_BYTES:
            return json_column(value)
        return await asyncio.to_thread(json_column, value)

    async def _write(self, conn: asyncpg.Connection, req: SetRequest, doc: str | None) -> None:
        ttl = (
            timedelta(seconds=req.ttl_seconds) if req.ttl_seconds and req.ttl_seconds > 0 else None
        )
        args = (req.key, req.value, doc, new_etag(), ttl)
        if req.etag is not None:
            status = await conn.execute(self._sql.update_if_etag, *args, req.etag)
            if rows_affected(status) == 0:
                raise ETagMismatchError(f"etag mismatch for key {req.key!r}")
        elif req.concurrency == Concurrency.FIRST_WRITE:
            status = await conn.execute(self._sql.insert_first_write, *args)
            if rows_affected(status) == 0:
                raise ETagMismatchError(f"key {req.key!r} already exists (first-write)")
        else:
            await conn.execute(self._sql.upsert, *args)

    async def _remove(self, conn: asyncpg.Connection, req: DeleteRequest) -> None:
        if req.etag is None:
            await conn.execute(self._sql.delete, req.key)
            return
        status = await conn.execute(self._sql.delete_if_etag, req.key, req.etag)
        if rows_affected(status) == 0:
            raise ETagMismatchError(f"etag mismatch for key {req.key!r}")

    # -- contract ----------------------------------------------------------------------
    async def get(self, req: GetRequest) -> GetResponse | None:
        async def work(conn: asyncpg.Connection) -> GetResponse | None:
            row = await conn.fetchrow(self._sql.get, req.key)
            if row is None:
                return None
            return GetResponse(bytes(row["value"]), row["etag"], self._metadata(row["expires_at"]))

        return await self._run(f"get {req.key!r}", work)

    async def bulk_get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> list[BulkGetItem]:
        if not keys:
            return []

        async def work(conn: asyncpg.Connection) -> list[BulkGetItem]:
            rows = await conn.fetch(self._sql.bulk_get, list(dict.fromkeys(keys)))
            found = {row["key"]: row for row in rows}
            out = []
            for key in keys:
                row = found.get(key)
                if row is None:
                    out.append(BulkGetItem(key))
                else:
                    meta = self._metadata(row["expires_at"])
                    out.append(BulkGetItem(key, bytes(row["value"]), row["etag"], meta))
            return out

        return await self._run(f"bulk get of {len(keys)} keys", work)

    async def set(self, req: SetRequest) -> None:
        if req.etag is not None:
            check_uuid_etag(req.etag)
        doc = await self._document(req.value)
        await self._run(f"set {req.key!r}", lambda conn: self._write(conn, req, doc))

    async def delete(self, req: DeleteRequest) -> None:
        if req.etag is not None:
            check_uuid_etag(req.etag)
        await self._run(f"delete {req.key!r}", lambda conn: self._remove(conn, req))

    async def multi(
        self, operations: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        for op in operations:  # a malformed etag fails the batch before it starts
            if op.etag is not None:
                check_uuid_etag(op.etag)
        if not operations:
            return

        # Each statement touches only its own key, so operations on different keys
        # commute: a stable sort by key keeps each key's order and makes every
        # transaction lock rows in the same order, so they do not deadlock each other.
        ordered = sorted(operations, key=lambda op: op.key)
        docs = [
            await self._document(op.value) if isinstance(op, SetRequest) else None for op in ordered
        ]

        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                for op, doc in zip(ordered, docs, strict=True):
                    if isinstance(op, SetRequest):
                        await self._write(conn, op, doc)
                    else:
                        await self._remove(conn, op)

        await self._run(f"transaction of {len(operations)} operations", work)

    async def query(self, req: QueryRequest) -> QueryResponse:
        q = req.query
        sql, args = select_query(self.settings.tableName, q, req.key_prefix)

        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(sql, *args)

        rows = await self._run("query", work)
        more = bool(q.limit) and len(rows) > q.limit
        page = rows[: q.limit] if more else rows
        token = str(q.offset + len(page)) if more else ""
        return QueryResponse(
            [QueryItem(r["key"], bytes(r["value"]), r["etag"]) for r in page], token
        )
