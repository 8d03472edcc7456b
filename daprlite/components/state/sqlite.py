"""``state.sqlite``: the embedded, durable state store that ``daprlite init`` sets up.

It sits behind ``blocks.state``, like every store, and keeps state in one
SQLite file (WAL by default) that several sidecar processes may share. The
standard-library ``sqlite3`` driver blocks, so each store owns ONE worker
thread that creates and alone uses the connection; the event loop only awaits
it. Every check-then-write runs in a ``BEGIN IMMEDIATE`` transaction, which
takes the file's write lock before reading, so etag checks stay atomic across
processes as well as within this one. Etags are random UUIDs. The SQL itself
lives in ``_sqlite_sql``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from daprlite.components._sqlite_common import in_transaction, open_connection, stop_worker
from daprlite.components.errors import ComponentError, ETagMismatchError, MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting
from daprlite.components.state._sqlite_sql import (
    COLUMNS,
    Statements,
    Target,
    compile_query,
    query_document,
    resolve_target,
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
from daprlite.components.state.query import Query

T = TypeVar("T")
_log = logging.getLogger("daprlite.component.state")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_BULK_CHUNK = 500  # keys per IN (...): well under SQLite's bound-parameter limit
_PROGRESS_STEPS = 10_000  # VM steps between deadline checks


@dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """Settings of ``state.sqlite``, under Dapr's names (matched case-insensitively)."""

    connectionString: str = setting(
        required=True,
        aliases=("url",),
        doc="The database: a file path (parent folders are created), a 'file:' URI, or ':memory:'.",
    )
    timeout: Duration = setting(
        Duration(20.0),
        doc="Longest time one operation may take, waiting for the worker included; at least 1s.",
    )
    busyTimeout: Duration = setting(
        Duration(2.0),
        doc="How long to wait for another connection's lock on the file (PRAGMA busy_timeout).",
    )
    disableWAL: bool = setting(
        False,
        doc="Use the rollback journal instead of WAL, e.g. on file systems without shared memory.",
    )
    tableName: str = setting("state", doc="Table that holds the state (letters, digits, '_').")
    metadataTableName: str = setting(
        "metadata", doc="Table for the store's own bookkeeping, such as the last cleanup time."
    )
    cleanupInterval: Duration = setting(
        Duration(3600.0),
        doc="How often expired rows are deleted; 0 or less disables it. Dapr's default is 0; "
        "ours is 1h because this store is the long-running laptop default.",
    )

    def validate(self) -> None:
        """Refuse values the decoder accepts but the store cannot use."""
        if self.timeout < 1:
            raise MetadataError("timeout", f"must be at least 1s, got {self.timeout:g}s")
        if self.busyTimeout < 0:
            raise MetadataError("busyTimeout", f"must not be negative, got {self.busyTimeout:g}s")
        for name in ("tableName", "metadataTableName"):
            value = getattr(self, name)
            if not _IDENTIFIER.fullmatch(value) or value.lower().startswith("sqlite_"):
                raise MetadataError(
                    name,
                    "expected a letter or '_' then up to 63 letters, digits or '_', "
                    f"not starting with 'sqlite_'; got {value!r}",
                )
        if self.tableName.lower() == self.metadataTableName.lower():
            raise MetadataError(
                "metadataTableName", f"must differ from tableName {self.tableName!r}"
            )


class SQLiteStateStore:
    """One SQLite file behind a single worker thread: ETAG, TRANSACTIONAL, TTL and QUERY_API."""

    def __init__(self) -> None:
        self.settings = SQLiteSettings()
        self._name = ""
        self._target = Target(":memory:", uri=False, file=None, label=":memory:")
        self._sql = Statements.for_tables("state", "metadata")
        self._executor: ThreadPoolExecutor | None = None
        self._cleanup: asyncio.Task[None] | None = None
        # Touched only on the worker thread:
        self._conn: sqlite3.Connection | None = None
        self._deadline = math.inf

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(SQLiteSettings, metadata.properties)
        settings.validate()
        self.settings = settings
        self._name = metadata.name
        self._target = resolve_target(settings.connectionString)
        self._sql = Statements.for_tables(settings.tableName, settings.metadataTableName)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"state.sqlite-{metadata.name}")
        try:
            journal = await self._run(self._open)
        except BaseException:
            await self.close()
            raise
        if settings.cleanupInterval > 0:
            self._cleanup = asyncio.create_task(
                self._cleanup_loop(settings.cleanupInterval), name=f"state.sqlite-{self._name}-gc"
            )
        _log.info(
            "state.sqlite %s: opened %s, table %s, journal %s",
            self._name,
            self._target.label,
            settings.tableName,
            journal,
        )

    def features(self) -> frozenset[Feature]:
        return frozenset({Feature.ETAG, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY_API})

    async def close(self) -> None:
        """Stop the cleanup task, let queued operations finish, then close the file."""
        cleanup, self._cleanup = self._cleanup, None
        executor, self._executor = self._executor, None
        await stop_worker(cleanup, executor, self._close_connection)

    # -- contract ------------------------------------------------------------------------
    async def get(self, req: GetRequest) -> GetResponse | None:
        row = await self._run(self._read_one, req.key)
        if row is None:
            return None
        value, etag, expires = row
        return GetResponse(value, etag, self._ttl_metadata(expires))

    async def bulk_get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> list[BulkGetItem]:
        if not keys:
            return []
        found = await self._run(self._read_many, list(dict.fromkeys(keys)))
        out = []
        for key in keys:
            row = found.get(key)
            if row is None:
                out.append(BulkGetItem(key))
            else:
                out.append(BulkGetItem(key, row[0], row[1], self._ttl_metadata(row[2])))
        return out

    async def set(self, req: SetRequest) -> None:
        if req.etag is not None:
            check_uuid_etag(req.etag)
        await self._run(self._write, [req])

    async def delete(self, req: DeleteRequest) -> None:
        if req.etag is not None:
            check_uuid_etag(req.etag)
        await self._run(self._write, [req])

    async def multi(
        self, operations: Sequence[TransactionOperation], metadata: Mapping[str, str]
    ) -> None:
        for op in operations:  # an invalid etag anywhere fails the whole batch up front
            if op.etag is not None:
                check_uuid_etag(op.etag)
        if operations:
            await self._run(self._write, list(operations))

    async def query(self, req: QueryRequest) -> QueryResponse:
        q = req.query
        rows = await self._run(self._select, q, req.key_prefix)
        token = ""
        if q.limit and len(rows) > q.limit:
            rows, token = rows[: q.limit], str(q.offset + q.limit)
        return QueryResponse([QueryItem(k, v, e) for k, v, e in rows], token)

    # -- event-loop side --------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` on the worker thread, within ``timeout`` from now."""
        if self._executor is None:
            raise ComponentError(f"state.sqlite {self._name}: the store is closed")
        deadline = time.monotonic() + self.settings.timeout
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, deadline, fn, args)

    async def _cleanup_loop(self, interval: float) -> None:
        while True:
            try:
                removed = await self._run(self._delete_expired, interval)
                if removed:
                    _log.info("state.sqlite %s: deleted %d expired keys", self._name, removed)
            except Exception as exc:  # keep cleaning up later; the store itself still works
                _log.warning("state.sqlite %s: cleanup of expired keys failed: %s", self._name, exc)
            await asyncio.sleep(interval)

    # -- worker thread ---------------------------------------------------------------------------
    def _call(self, deadline: float, fn: Callable[..., T], args: tuple[object, ...]) -> T:
        where = f"state.sqlite {self._name} ({self._target.label})"
        if time.monotonic() >= deadline:
            raise ComponentError(f"{where}: timed out after {self.settings.timeout:g}s in queue")
        self._deadline = deadline
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_INTERRUPT":
                raise ComponentError(
                    f"{where}: timed out after {self.settings.timeout:g}s (metadata 'timeout')"
                ) from exc
            raise ComponentError(f"{where}: {exc}") from exc
        except (OSError, UnicodeEncodeError) as exc:
            raise ComponentError(f"{where}: {exc}") from exc
        finally:
            self._deadline = math.inf
            if self._conn is not None and self._conn.in_transaction:
                self._conn.rollback()  # never let one job's open transaction leak into the next

    def _past_deadline(self) -> bool:
        # SQLite's progress handler: a true result interrupts the running statement.
        return time.monotonic() > self._deadline

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ComponentError(f"state.sqlite {self._name}: the store is not open")
        return self._conn

    def _open(self) -> str:
        s = self.settings
        conn, journal = open_connection(
            self._target,
            s.busyTimeout,
            wal=not s.disableWAL,
            log=_log,
            who=f"state.sqlite {self._name}",
        )
        self._conn = conn
        conn.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
        self._in_transaction(self._create_schema)
        return journal

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        for statement in self._sql.create_tables:
            conn.execute(statement)
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({self._sql.table})")}
        missing = [c for c in COLUMNS if c not in have]
        if missing:
            raise ComponentError(
                f"state.sqlite {self._name}: table {self.settings.tableName!r} in "
                f"{self._target.label} exists without column(s) {', '.join(missing)}; "
                "point 'tableName' at a new table"
            )
        conn.execute(self._sql.create_index(f"{self.settings.tableName}_expiration_time"))

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _in_transaction(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in BEGIN IMMEDIATE: the write lock is held from the first read."""
        return in_transaction(self._connection(), body, self._no_deadline)

    def _no_deadline(self) -> None:
        self._deadline = math.inf  # an interrupted COMMIT would leave the outcome unclear

    def _read_one(self, key: str) -> tuple[bytes, str, float | None] | None:
        return self._connection().execute(self._sql.get, (key, time.time())).fetchone()

    def _read_many(self, keys: list[str]) -> dict[str, tuple[bytes, str, float | None]]:
        conn, now = self._connection(), time.time()
        chunks = [keys[i : i + _BULK_CHUNK] for i in range(0, len(keys), _BULK_CHUNK)]
        found: dict[str, tuple[bytes, str, float | None]] = {}
        snapshot = len(chunks) > 1  # several SELECTs read one snapshot inside one transaction
        if snapshot:
            conn.execute("BEGIN")
        try:
            for chunk in chunks:
                for key, value, etag, expires in conn.execute(
                    self._sql.bulk_get(len(chunk)), (*chunk, now)
                ):
                    found[key] = (value, etag, expires)
        finally:
            if snapshot and conn.in_transaction:
                conn.execute("COMMIT")
        return found

    def _write(self, operations: list[TransactionOperation]) -> None:
        # Parse JSON before taking the lock: other sidecars wait for as little as possible.
        docs = {id(op): query_document(op.value) for op in operations if isinstance(op, SetRequest)}

        def body(conn: sqlite3.Connection) -> None:
            now = time.time()
            for op in operations:
                if isinstance(op, SetRequest):
                    self._apply_set(conn, op, docs[id(op)], now)
                else:
                    self._apply_delete(conn, op, now)

        self._in_transaction(body)

    def _apply_set(
        self, conn: sqlite3.Connection, req: SetRequest, doc: str | None, now: float
    ) -> None:
        expires = now + req.ttl_seconds if req.ttl_seconds and req.ttl_seconds > 0 else None
        value, is_json = req.value, int(doc is not None)
        if req.etag is not None:
            params = (value, is_json, doc, new_etag(), expires, now, req.key, req.etag, now)
            if conn.execute(self._sql.update_if_etag, params).rowcount != 1:
                raise ETagMismatchError(f"etag mismatch for key {req.key!r}")
            return
        columns = (req.key, value, is_json, doc, new_etag(), expires, now)
        if req.concurrency == Concurrency.FIRST_WRITE:
            if conn.execute(self._sql.insert_first, (*columns, now)).rowcount != 1:
                raise ETagMismatchError(f"key {req.key!r} already exists (first-write)")
            return
        conn.execute(self._sql.upsert, columns)

    def _apply_delete(self, conn: sqlite3.Connection, req: DeleteRequest, now: float) -> None:
        if req.etag is None:
            conn.execute(self._sql.delete, (req.key,))
        elif conn.execute(self._sql.delete_if_etag, (req.key, req.etag, now)).rowcount != 1:
            raise ETagMismatchError(f"etag mismatch for key {req.key!r}")

    def _select(self, query: Query, key_prefix: str) -> list[tuple[str, bytes, str]]:
        sql, params = compile_query(
            query, table=self._sql.table, key_prefix=key_prefix, now=time.time()
        )
        return self._connection().execute(sql, params).fetchall()

    def _delete_expired(self, interval: float) -> int:
        """Delete expired rows unless any sidecar on this file did so within ``interval``."""

        def body(conn: sqlite3.Connection) -> int:
            now = time.time()
            last = conn.execute(self._sql.read_meta, (self._sql.cleanup_key,)).fetchone()
            # 0.9: a sleep of ``interval`` may end a hair before the clock says it has passed.
            if last is not None and now - float(last[0]) < 0.9 * interval:
                return 0
            removed = conn.execute(self._sql.delete_expired, (now,)).rowcount
            conn.execute(self._sql.write_meta, (self._sql.cleanup_key, repr(now)))
            return removed

        return self._in_transaction(body)

    @staticmethod
    def _ttl_metadata(expires: float | None) -> dict[str, str]:
        if expires is None:
            return {}
        stamp = datetime.fromtimestamp(expires, UTC).isoformat().replace("+00:00", "Z")
        return {"ttlExpireTime": stamp}
