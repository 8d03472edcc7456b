"""The SQL that ``state.postgresql`` runs: schema, statements and query translation.

The store (``postgresql.py``) decides *when* to run what; this module holds
*what* runs, for one table. Everything here is plain SQL that PostgreSQL and
CockroachDB both accept: ``INSERT … ON CONFLICT``, JSONB operators, standard
types, no extensions, no PL/pgSQL and no advisory locks. Table names are
validated identifiers, quoted; every user value travels as a ``$n`` parameter.

Row layout: ``key`` (the prefixed state key), ``value`` (the stored bytes,
verbatim), ``value_json`` (the decoded document when the value is JSON, else
NULL; read only by queries), ``etag`` (a random UUID, as text), ``expires_at``
(NULL = never) and ``updated_at``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeGuard

from daprlite.components.state.query import Comparison, Filter, Query, SortKey
from daprlite.components.state.values import json_document

SCHEMA_VERSION = 1
CLEANUP_BATCH = 1000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
LIVE = "(expires_at IS NULL OR expires_at > CURRENT_TIMESTAMP)"
_ORDERING = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}


def quote_table(name: str) -> str:
    """``table`` or ``schema.table``, checked to be plain identifiers, double-quoted.

    Raises ValueError for anything else, so no name can smuggle SQL in.
    """
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ValueError(
            f"{name!r} is not a table name; expected 'table' or 'schema.table' made of "
            "letters, digits and underscores (at most 63 each, not starting with a digit)"
        )
    return ".".join(f'"{p}"' for p in parts)


def _index_name(table: str) -> str:
    base = table.split(".")[-1]
    if len(base) > 40:  # keep under the 63-byte identifier limit, still unique per table
        base = f"{base[:30]}_{hashlib.sha256(base.encode()).hexdigest()[:8]}"
    return f'"{base}_expires_at_idx"'


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement the store runs against one state table and its metadata table.

    Parameters of the writes: $1 key, $2 value, $3 value_json (text or NULL),
    $4 new etag, $5 TTL as an interval (NULL = no expiry); $6 expected etag.
    """

    schema: tuple[str, ...]
    create_metadata: str
    get_version: str
    set_version: str
    check_columns: str
    get: str
    bulk_get: str
    upsert: str
    insert_first_write: str
    update_if_etag: str
    delete: str
    delete_if_etag: str
    delete_expired: str

    @classmethod
    def for_tables(cls, table_name: str, metadata_table_name: str) -> Statements:
        t, md = quote_table(table_name), quote_table(metadata_table_name)
        values = (
            "($1, $2, CAST($3 AS JSONB), $4, "
            "CURRENT_TIMESTAMP + CAST($5 AS INTERVAL), CURRENT_TIMESTAMP)"
        )
        upsert = (
            f"INSERT INTO {t} AS cur (key, value, value_json, etag, expires_at, updated_at) "
            f"VALUES {values} ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, "
            "value_json = EXCLUDED.value_json, etag = EXCLUDED.etag, "
            "expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at"
        )
        return cls(
            schema=(
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT NOT NULL PRIMARY KEY, "
                "value BYTEA NOT NULL, value_json JSONB NULL, etag TEXT NOT NULL, "
                "expires_at TIMESTAMPTZ NULL, "
                "updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                f"CREATE INDEX IF NOT EXISTS {_index_name(table_name)} ON {t} (expires_at)",
            ),
            create_metadata=(
                f"CREATE TABLE IF NOT EXISTS {md} "
                "(key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)"
            ),
            get_version=f"SELECT value FROM {md} WHERE key = $1",
            set_version=(
                f"INSERT INTO {md} AS cur (key, value) VALUES ($1, $2) ON CONFLICT (key) "
                "DO UPDATE SET value = EXCLUDED.value "
                "WHERE CAST(cur.value AS INTEGER) < CAST(EXCLUDED.value AS INTEGER)"
            ),
            check_columns=(
                f"SELECT key, value, value_json, etag, expires_at, updated_at FROM {t} LIMIT 0"
            ),
            get=f"SELECT value, etag, expires_at FROM {t} WHERE key = $1 AND {LIVE}",
            bulk_get=(
                f"SELECT key, value, etag, expires_at FROM {t} "
                f"WHERE key = ANY(CAST($1 AS TEXT[])) AND {LIVE}"
            ),
            upsert=upsert,
            # An existing row blocks a first write unless it has expired; the
            # conflict check and the update are one atomic statement.
            insert_first_write=(
                f"{upsert} WHERE cur.expires_at IS NOT NULL AND cur.expires_at <= CURRENT_TIMESTAMP"
            ),
            update_if_etag=(
                f"UPDATE {t} SET value = $2, value_json = CAST($3 AS JSONB), etag = $4, "
                "expires_at = CURRENT_TIMESTAMP + CAST($5 AS INTERVAL), "
                f"updated_at = CURRENT_TIMESTAMP WHERE key = $1 AND etag = $6 AND {LIVE}"
            ),
            delete=f"DELETE FROM {t} WHERE key = $1",
            delete_if_etag=f"DELETE FROM {t} WHERE key = $1 AND etag = $2 AND {LIVE}",
            delete_expired=(
                f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} "
                f"WHERE expires_at <= CURRENT_TIMESTAMP LIMIT {CLEANUP_BATCH})"
            ),
        )


def rows_affected(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 1`` or ``INSERT 0 1``."""
    return int(status.rsplit(" ", 1)[-1])


def json_column(value: bytes) -> str | None:
    """The text to store in ``value_json``: the document when JSONB can hold it, else None.

    Python's JSON parser accepts a few things JSONB refuses (NaN, Infinity,
    ``\\u0000``, lone surrogates); such values stay unqueryable instead of
    failing the write.
    """
    doc = json_document(value)
    if doc is None:
        return None
    try:
        text = json.dumps(doc, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return None
    return None if "\\u0000" in text else text


def escape_like(prefix: str) -> str:
    """``prefix`` as a LIKE pattern matching itself followed by anything."""
    return re.sub(r"([\\%_])", r"\\\1", prefix) + "%"


class _Params:
    """Collects ``$n`` parameters; a JSON path's parts are bound once per query."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self._paths: dict[tuple[str, ...], tuple[str, str]] = {}

    def add(self, value: object, sql_type: str) -> str:
        self.values.append(value)
        return f"CAST(${len(self.values)} AS {sql_type})"

    def path(self, path: tuple[str, ...]) -> tuple[str, str]:
        """(JSONB node, its text) at ``path``; NULL when absent. ``->`` never indexes arrays."""
        if path not in self._paths:
            refs = [self.add(p, "TEXT") for p in path]
            parent = "value_json" + "".join(f" -> {r}" for r in refs[:-1])
            self._paths[path] = (f"({parent} -> {refs[-1]})", f"({parent} ->> {refs[-1]})")
        return self._paths[path]


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: int | float) -> Decimal:
    # repr() is the shortest text that round-trips, so 0.1 binds as 0.1, not 0.1000…0555.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _operand(want: object) -> tuple[str, str, object] | None:
    """(kind, SQL type, parameter value) for a filter value; None when nothing can match it.

    kind is ``number`` or ``string`` (compared as such), else ``json``. NaN
    equals nothing, as in Python; a value JSONB cannot hold matches nothing.
    """
    if _is_number(want):
        if isinstance(want, float) and math.isnan(want):
            return None
        return "number", "NUMERIC", _number(want)
    if isinstance(want, str):
        return "string", "TEXT", want
    try:
        return "json", "JSONB", json.dumps(want, allow_nan=False)
    except ValueError:
        return None


def _test(params: _Params, path: tuple[str, ...], op: str, want: object) -> str:
    """SQL that is TRUE when ``<value at path> op want`` holds and FALSE otherwise, never NULL.

    A missing path, or a value of another JSON type, is FALSE, as in
    ``query.evaluate``. Ordering on null, booleans, arrays or objects matches
    nothing. Parameters are bound only for SQL that uses them.
    """
    operand = _operand(want)
    if operand is None or (operand[0] == "json" and op != "="):
        return "FALSE"
    kind, sql_type, value = operand
    node, text = params.path(path)
    p = params.add(value, sql_type)
    if kind == "number":
        left, right = f"CAST({text} AS NUMERIC)", p
    elif kind == "string" and op == "=":
        left, right = text, p
    elif kind == "string":
        # UTF-8 bytes sort like code points, which is how Python orders strings;
        # the database collation might not.
        left, right = f"convert_to({text}, 'UTF8')", f"convert_to({p}, 'UTF8')"
    else:  # null, booleans, arrays, objects: JSON equality
        return f"COALESCE({node} = {p}, FALSE)"
    return f"(CASE WHEN jsonb_typeof({node}) = '{kind}' THEN {left} {op} {right} ELSE FALSE END)"


def _comparison(params: _Params, c: Comparison) -> str:
    if c.op in ("EQ", "NEQ", "IN"):
        wanted = c.value if c.op == "IN" and isinstance(c.value, list) else [c.value]
        terms = [_test(params, c.path, "=", w) for w in wanted]
        matched = f"({' OR '.join(terms)})" if terms else "FALSE"
        # NEQ is NOT EQ, so a missing path is "not equal", as in query.evaluate.
        return f"(NOT {matched})" if c.op == "NEQ" else matched
    return _test(params, c.path, _ORDERING[c.op], c.value)


def _filter(params: _Params, flt: Filter) -> str:
    if isinstance(flt, Comparison):
        return _comparison(params, flt)
    joiner = " AND " if flt.op == "AND" else " OR "
    return "(" + joiner.join(_filter(params, c) for c in flt.children) + ")"


def _order_terms(params: _Params, key: SortKey) -> list[str]:
    # Mirrors query.apply_sort: numbers, then strings, then other JSON, then
    # null/missing; DESC reverses all of it. Ties fall through to the next key.
    node, text = params.path(key.path)
    kind = f"jsonb_typeof({node})"
    terms = [
        f"CASE WHEN {node} IS NULL OR {kind} = 'null' THEN 3 "
        f"WHEN {kind} = 'number' THEN 0 WHEN {kind} = 'string' THEN 1 ELSE 2 END",
        f"CASE WHEN {kind} = 'number' THEN CAST({text} AS NUMERIC) END",
        f"CASE WHEN {kind} = 'string' THEN convert_to({text}, 'UTF8') END",
        f"CASE WHEN {kind} IN ('boolean', 'array', 'object') "
        f"THEN convert_to(CAST({node} AS TEXT), 'UTF8') END",
    ]
    return [f"{t} DESC" if key.descending else t for t in terms]


def select_query(table_name: str, query: Query, key_prefix: str) -> tuple[str, list[object]]:
    """A parameterised SELECT of (key, value, etag) for ``query`` under ``key_prefix``.

    With a limit it asks for one row more than the page, so the caller knows
    whether another page exists.
    """
    params = _Params()
    where = [
        f"key LIKE {params.add(escape_like(key_prefix), 'TEXT')} ESCAPE '\\'",
        "value_json IS NOT NULL",
        LIVE,
    ]
    if query.filter is not None:
        where.append(_filter(params, query.filter))
    order: list[str] = []
    for key in query.sort:
        order.extend(_order_terms(params, key))
    order.append("convert_to(key, 'UTF8')")  # stable paging: ties in key order
    sql = (
        f"SELECT key, value, etag FROM {quote_table(table_name)} "
        f"WHERE {' AND '.join(where)} ORDER BY {', '.join(order)}"
    )
    if query.limit:
        sql += f" LIMIT {params.add(query.limit + 1, 'BIGINT')}"
    if query.offset:
        sql += f" OFFSET {params.add(query.offset, 'BIGINT')}"
    return sql, params.values
