"""``bindings.postgresql`` (alias ``bindings.postgres``): run the caller's SQL on PostgreSQL.

``blocks.bindings`` calls :meth:`PostgreSQLBinding.invoke` for
``POST /v1.0/bindings/{name}``. The request metadata ``sql`` is the statement
and ``params`` a JSON array bound to ``$1..$n`` by the server: parameter values
are never written into the SQL text, so they cannot inject SQL. ``exec``
answers with the affected row count, ``query`` with the rows as JSON
(:mod:`daprlite.components.bindings._postgresql_values`), and ``close`` closes
the pool, which the next call opens again. The connection settings and the
pool are the state store's (:mod:`daprlite.components._postgresql_common`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
from asyncpg.prepared_stmt import PreparedStatement

from daprlite.components._postgresql_common import (
    ConnectOptions,
    PostgreSQLConnectionSettings,
    close_pool,
    open_pool,
    parse_connection,
)
from daprlite.components.bindings._postgresql_values import (
    JSONValue,
    coerce_params,
    encode_rows,
    go_duration,
    parse_params,
    rfc3339,
    rows_affected,
)
from daprlite.components.bindings.api import (
    InvokeRequest,
    InvokeResponse,
    UnsupportedOperationError,
)
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode

_log = logging.getLogger("daprlite.component.bindings")
T = TypeVar("T")

_OPERATIONS = ("exec", "query", "close")
# SQLSTATE classes that mean the server or the connection failed, not the caller's
# SQL: connection (08), rollback (40, e.g. serialisation), resources (53), object
# state / locks (55), operator intervention and cancel (57), system (58),
# configuration (F0), foreign data (HV), internal (XX). Every other class is
# the caller's statement being wrong: syntax, types, constraints...
_SERVER_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58", "F0", "HV", "XX"})
# asyncpg's message when it cannot encode a parameter value (e.g. out of range).
_BAD_ARGUMENT = re.compile(r"invalid input for query argument (\$\d+): .*\(([^()]*)\)$", re.S)
_INLINE_ROWS = 500  # larger results are JSON-encoded in a worker thread


class SQLError(ComponentError):
    """The caller's SQL or params were rejected: a syntax error, wrong types, a constraint...

    ``client_error`` tells the bindings block to answer 4xx: retrying the same
    request cannot succeed.
    """

    client_error = True


@dataclass(frozen=True, slots=True, repr=False)  # repr=False keeps the redacting __repr__
class PostgreSQLBindingSettings(PostgreSQLConnectionSettings):
    """``bindings.postgresql`` metadata; names as in Dapr, matched case-insensitively.

    All of them are the connection fields shared with ``state.postgresql``, in
    :class:`~daprlite.components._postgresql_common.PostgreSQLConnectionSettings`.
    """


class PostgreSQLBinding:
    """Operations ``exec``, ``query`` and ``close`` on an asyncpg pool opened at init."""

    def __init__(self) -> None:
        self.settings = PostgreSQLBindingSettings()
        self._name = ""
        self._options = ConnectOptions()
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()  # one open / close of the pool at a time
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------
    async def init(self, metadata: ComponentMetadata) -> None:
        self._name = metadata.name
        self.settings = decode(PostgreSQLBindingSettings, metadata.properties)
        self._options = parse_connection(self.settings, what=self._what(), log=_log)
        self._closed = False
        await self._get_pool()  # connect now: a wrong address fails the start-up
        _log.info("binding %r: PostgreSQL %s", self._name, self._options.describe())

    def operations(self) -> Sequence[str]:
        return _OPERATIONS

    async def close(self) -> None:
        """Close the pool for good: unlike the ``close`` operation, later calls fail."""
        self._closed = True
        await self._close_pool()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise ComponentError(f"binding {self._name!r} is closed")
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await open_pool(self.settings, self._options, what=self._what())
            return self._pool

    async def _close_pool(self) -> None:
        async with self._pool_lock:
            pool, self._pool = self._pool, None
            if pool is not None:
                await close_pool(pool)  # lets running calls finish, but not forever

    def _what(self) -> str:
        return f"binding {self._name!r}"

    # -- operations ------------------------------------------------------------------
    async def invoke(self, req: InvokeRequest) -> InvokeResponse:
        if req.operation not in _OPERATIONS:
            raise UnsupportedOperationError(
                f"binding {self._name!r} does not support operation {req.operation!r}; "
                f"supported operations: {', '.join(_OPERATIONS)}"
            )
        if req.operation == "close":
            await self._close_pool()
            return InvokeResponse()
        sql = req.metadata.get("sql", "")
        if not sql.strip():
            raise MetadataError("sql", "is required in the request metadata (the statement)")
        params = parse_params(req.metadata.get("params", ""))
        started = datetime.now(UTC)
        clock = time.perf_counter_ns()
        meta = {"operation": req.operation, "sql": sql, "start-time": rfc3339(started)}
        data: bytes | None = None
        if req.operation == "exec":
            meta["rows-affected"] = str(await self._exec(sql, params))
        else:
            data = await self._query(sql, params)
        elapsed = time.perf_counter_ns() - clock
        meta["end-time"] = rfc3339(datetime.now(UTC))
        meta["duration"] = go_duration(elapsed)
        return InvokeResponse(data=data, metadata=meta, content_type="application/json")

    async def _exec(self, sql: str, params: Sequence[JSONValue]) -> int:
        async def work(conn: asyncpg.Connection) -> str:
            if not params:
                # Without parameters, as pgx does: the simple protocol, so a script of
                # several statements runs too (the row count is the last one's).
                status: str = await conn.execute(sql)
                return status
            stmt = await conn.prepare(sql)
            await stmt.fetch(*self._bind(stmt, params))
            return stmt.get_statusmsg()

        return rows_affected(await self._run("exec", work))

    async def _query(self, sql: str, params: Sequence[JSONValue]) -> bytes:
        async def work(conn: asyncpg.Connection) -> tuple[list[asyncpg.Record], list[bool]]:
            stmt = await conn.prepare(sql)
            rows = await stmt.fetch(*self._bind(stmt, params))
            json_columns = [a.type.name in ("json", "jsonb") for a in stmt.get_attributes()]
            return rows, json_columns

        rows, json_columns = await self._run("query", work)
        if len(rows) > _INLINE_ROWS:
            return await asyncio.to_thread(encode_rows, rows, json_columns)
        return encode_rows(rows, json_columns)

    def _bind(self, stmt: PreparedStatement, params: Sequence[JSONValue]) -> list[object]:
        types = stmt.get_parameters()
        if len(types) != len(params):
            raise SQLError(
                f"binding {self._name!r}: the statement has {len(types)} parameter(s) "
                f"but params holds {len(params)} value(s)"
            )
        return coerce_params(params, types)

    async def _run(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on a pooled connection within the timeout; map driver errors."""
        pool = await self._get_pool()
        timeout = self.settings.timeout
        try:
            async with asyncio.timeout(timeout), pool.acquire() as conn:
                return await work(conn)
        except TimeoutError as exc:
            raise ComponentError(
                f"binding {self._name!r}: {what} timed out after {timeout:g}s"
            ) from exc
        except asyncpg.PostgresError as exc:
            state = exc.sqlstate or ""
            argument = _BAD_ARGUMENT.match(str(exc))
            if argument:  # asyncpg could not encode a value; its message quotes it, we do not
                raise MetadataError(
                    "params", f"the value for {argument.group(1)} is invalid: {argument.group(2)}"
                ) from None
            # The primary message and the hint, not the DETAIL: that one may quote row
            # data ("Key (email)=(...) already exists").
            hint = f"; hint: {exc.hint}" if getattr(exc, "hint", None) else ""
            message = (
                f"binding {self._name!r}: {what} failed: {exc.args[0] if exc.args else exc}"
                f"{hint} (SQLSTATE {state})"
            )
            if state[:2] in _SERVER_SQLSTATE_CLASSES:
                raise ComponentError(message) from exc
            raise SQLError(message) from exc
        except asyncpg.InterfaceError as exc:
            raise ComponentError(f"binding {self._name!r}: {what} failed: {exc}") from exc
        except OSError as exc:
            raise ComponentError(f"binding {self._name!r}: {what} failed: {exc}") from exc
