"""The SQL behind ``state.sqlite``: where the file is, the schema, and queries.

``state.sqlite`` (the store class in ``sqlite.py``) runs these statements on its
own worker thread. This module holds no connection and does no I/O: it parses
the connection string, writes the table-specific statements once, turns stored
values into the JSON text the query API searches, and compiles a parsed
:class:`~daprlite.components.state.query.Query` into one parameterised SELECT
whose results match the reference ``query.evaluate`` / ``query.apply_sort``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from daprlite.components.errors import ComponentError
from daprlite.components.state.query import Comparison, Filter, JSONValue, Logical, Query
from daprlite.components.state.values import json_document

SQLParam = str | int | float | bytes | None

# Columns the store reads and writes; an existing table lacking one is refused at init.
COLUMNS = ("key", "value", "is_json", "doc", "etag", "expiration_time", "update_time")

_LIVE = "(expiration_time IS NULL OR expiration_time > ?)"
_NUMERIC_TYPES = "('integer', 'real', 'true', 'false')"
_ORDERING = {"GT": ">", "GTE": ">=", "LT": "<", "LTE": "<="}
_INT64 = range(-(2**63), 2**63)


@dataclass(frozen=True, slots=True)
class Target:
    """What ``sqlite3.connect`` opens: ``database`` (a path or URI) and the file, if any."""

    database: str
    uri: bool
    file: Path | None  # None for in-memory (and read-only) databases: no directory to create
    label: str  # for log lines and errors; never carries URI options


def resolve_target(connection_string: str) -> Target:
    """Interpret ``connectionString``: a file path, a ``file:`` URI or ``:memory:``.

    As in Dapr, a plain path followed by ``?options`` is read as a ``file:`` URI.
    """
    text = connection_string.strip()
    if text == ":memory:":
        return Target(text, uri=False, file=None, label=text)
    if not text.startswith("file:") and "?" in text:
        text = "file:" + text
    if not text.startswith("file:"):
        path = Path(text).expanduser()
        return Target(str(path), uri=False, file=path, label=str(path))
    parts = urlsplit(text)
    path_text = unquote(parts.path)
    modes = parse_qs(parts.query).get("mode", [])
    no_file = path_text in ("", ":memory:") or "memory" in modes or "ro" in modes
    return Target(text, uri=True, file=None if no_file else Path(path_text), label=path_text)


def query_document(value: bytes) -> str | None:
    """The JSON text the query API searches for ``value``, or None when it is not JSON.

    Values are kept verbatim in ``value``; this is a second, normalised copy
    (``doc``). It is parsed by Python, like the reference evaluator, so escaped
    object keys (``"caf\\u00e9"``), duplicate keys and UTF-16 text resolve the
    way ``query.evaluate`` sees them; SQLite's own parser would disagree. The
    copy is strict JSON, so ``json_extract`` can never fail on a stored row.
    """
    try:
        doc = json_document(value)
        if doc is None:
            return None
        text = json.dumps(
            doc, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
        )
    except (ValueError, RecursionError):  # NaN/Infinity, or nested deeper than Python parses
        return None
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate escape: keep it escaped
        text = json.dumps(doc, allow_nan=False, sort_keys=True, separators=(",", ":"))
    return text


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of one state table, written once at init (names already validated)."""

    table: str  # quoted identifier
    metadata_table: str  # quoted identifier
    cleanup_key: str  # row of the metadata table holding the last cleanup time

    @classmethod
    def for_tables(cls, table: str, metadata_table: str) -> Statements:
        return cls(f'"{table}"', f'"{metadata_table}"', f"last-cleanup-{table}")

    @property
    def create_tables(self) -> tuple[str, ...]:
        return (
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                key TEXT NOT NULL PRIMARY KEY,
                value BLOB NOT NULL,
                is_json INTEGER NOT NULL,
                doc TEXT,
                etag TEXT NOT NULL,
                expiration_time REAL,
                update_time REAL NOT NULL
            )""",
            f"CREATE TABLE IF NOT EXISTS {self.metadata_table} "
            "(key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)",
        )

    def create_index(self, index_name: str) -> str:
        """The partial index the cleanup's DELETE of expired rows uses."""
        return (
            f'CREATE INDEX IF NOT EXISTS "{index_name}" ON {self.table} (expiration_time) '
            "WHERE expiration_time IS NOT NULL"
        )

    @property
    def get(self) -> str:
        return f"SELECT value, etag, expiration_time FROM {self.table} WHERE key = ? AND {_LIVE}"

    def bulk_get(self, count: int) -> str:
        marks = ", ".join("?" * count)
        return (
            f"SELECT key, value, etag, expiration_time FROM {self.table} "
            f"WHERE key IN ({marks}) AND {_LIVE}"
        )

    @property
    def upsert(self) -> str:
        """Params: the seven COLUMNS."""
        return (
            f"INSERT INTO {self.table} ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, is_json = excluded.is_json, "
            "doc = excluded.doc, etag = excluded.etag, "
            "expiration_time = excluded.expiration_time, update_time = excluded.update_time"
        )

    @property
    def insert_first(self) -> str:
        """Params: the seven COLUMNS, then now. Replaces only an expired row."""
        return (
            f"{self.upsert} WHERE {self.table}.expiration_time IS NOT NULL "
            f"AND {self.table}.expiration_time <= ?"
        )

    @property
    def update_if_etag(self) -> str:
        """Params: value, is_json, doc, new etag, expiration_time, update_time, key, etag, now."""
        return (
            f"UPDATE {self.table} SET value = ?, is_json = ?, doc = ?, etag = ?, "
            f"expiration_time = ?, update_time = ? WHERE key = ? AND etag = ? AND {_LIVE}"
        )

    @property
    def delete(self) -> str:
        return f"DELETE FROM {self.table} WHERE key = ?"

    @property
    def delete_if_etag(self) -> str:
        return f"DELETE FROM {self.table} WHERE key = ? AND etag = ? AND {_LIVE}"

    @property
    def delete_expired(self) -> str:
        return (
            f"DELETE FROM {self.table} WHERE expiration_time IS NOT NULL AND expiration_time <= ?"
        )

    @property
    def read_meta(self) -> str:
        return f"SELECT value FROM {self.metadata_table} WHERE key = ?"

    @property
    def write_meta(self) -> str:
        return (
            f"INSERT INTO {self.metadata_table} (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )


# -- query compilation -----------------------------------------------------------------


def json_path(path: tuple[str, ...]) -> str:
    """``("order", "total")`` → ``$."order"."total"``, passed to SQLite as a parameter.

    SQLite cannot address a key containing ``"`` (its quoted labels have no
    escape), and versions disagree on backslashes; such keys are refused
    loudly rather than silently matching nothing.
    """
    for part in path:
        if any(c in '"\\' or c < " " for c in part):
            raise ComponentError(
                f"query key {'.'.join(path)!r}: state.sqlite cannot address object keys "
                "containing '\"', '\\' or control characters"
            )
    return "$" + "".join(f'."{part}"' for part in path)


def _number(value: int | float) -> int | float:
    # SQLite integers are 64-bit; larger JSON integers compare as REAL (as SQLite stores them).
    return value if isinstance(value, float) or value in _INT64 else float(value)


class _Compiler:
    """Builds SQL text and its parameter list together, so they never drift apart."""

    def __init__(self) -> None:
        self.params: list[SQLParam] = []

    def param(self, value: SQLParam) -> str:
        self.params.append(value)
        return "?"

    def json_type(self, path: tuple[str, ...]) -> str:
        # 'missing' for an absent path, so every comparison is true or false, never NULL.
        return f"IFNULL(json_type(doc, {self.param(json_path(path))}), 'missing')"

    def json_value(self, path: tuple[str, ...]) -> str:
        return f"json_extract(doc, {self.param(json_path(path))})"

    def filter(self, node: Filter) -> str:
        if isinstance(node, Logical):
            joiner = " AND " if node.op == "AND" else " OR "
            return "(" + joiner.join(self.filter(c) for c in node.children) + ")"
        return self.comparison(node)

    def comparison(self, c: Comparison) -> str:
        if c.op == "EQ":
            return self.equals(c.path, c.value)
        if c.op == "NEQ":
            return (
                f"(NOT {self.equals(c.path, c.value)})"  # true for a missing path, as in evaluate
            )
        if c.op == "IN":
            options = c.value if isinstance(c.value, list) else []
            if not options:
                return "0"
            return "(" + " OR ".join(self.equals(c.path, v) for v in options) + ")"
        return self.ordered(_ORDERING[c.op], c.path, c.value)

    def equals(self, path: tuple[str, ...], want: JSONValue) -> str:
        if want is None:
            return f"({self.json_type(path)} = 'null')"
        if isinstance(want, (bool, int, float)):
            # Python's == makes True == 1 and 1 == 1.0; json_extract gives true as 1.
            return self._typed(path, _NUMERIC_TYPES, "=", _number(want))
        if isinstance(want, str):
            return self._typed(path, "('text')", "=", want)
        # Arrays and objects: equal when their canonical JSON texts are equal.
        kind = "('array')" if isinstance(want, list) else "('object')"
        canonical = json.dumps(want, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return self._typed(path, kind, "=", canonical)

    def ordered(self, op: str, path: tuple[str, ...], want: JSONValue) -> str:
        if isinstance(want, (bool, int, float)):
            return self._typed(path, _NUMERIC_TYPES, op, _number(want))
        if isinstance(want, str):
            # BINARY collation compares UTF-8 bytes: the same order as Python's str.
            return self._typed(path, "('text')", op, want)
        return "0"  # null, arrays and objects are not ordered (evaluate's TypeError → False)

    def _typed(self, path: tuple[str, ...], types: str, op: str, want: SQLParam) -> str:
        kind = self.json_type(path)
        value = self.json_value(path)
        return f"IFNULL({kind} IN {types} AND {value} {op} {self.param(want)}, 0)"

    def sort_terms(self, path: tuple[str, ...], descending: bool) -> list[str]:
        # apply_sort's rank: numbers, strings, other JSON (by its text), then null or missing.
        kind = f"IFNULL(json_type(doc, {self.param(json_path(path))}), 'null')"
        rank = (
            f"CASE {kind} WHEN 'integer' THEN 0 WHEN 'real' THEN 0 WHEN 'text' THEN 1 "
            "WHEN 'null' THEN 3 ELSE 2 END"
        )
        booleans = f"json_type(doc, {self.param(json_path(path))})"
        value = (
            f"CASE {booleans} WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"ELSE {self.json_value(path)} END"
        )
        direction = " DESC" if descending else ""
        return [rank + direction, value + direction]


def compile_query(
    query: Query, *, table: str, key_prefix: str, now: float
) -> tuple[str, list[SQLParam]]:
    """One SELECT of (key, value, etag) for ``query``; it fetches one row past the page.

    ``table`` is the quoted table name. The extra row tells the caller whether
    another page follows.
    """
    sql = _Compiler()
    where = ["is_json = 1", f"(expiration_time IS NULL OR expiration_time > {sql.param(now)})"]
    if key_prefix:
        # substr, not LIKE/GLOB: '_', '%', '*' and '[' in a prefix are plain characters.
        where.append(f"substr(key, 1, {sql.param(len(key_prefix))}) = {sql.param(key_prefix)}")
    if query.filter is not None:
        where.append(sql.filter(query.filter))
    order: list[str] = []
    for key in query.sort:
        order += sql.sort_terms(key.path, key.descending)
    order.append("key")  # ties in key order, as apply_sort's stable sort leaves them
    limit = query.limit + 1 if query.limit else -1
    text = (
        f"SELECT key, value, etag FROM {table} WHERE {' AND '.join(where)} "
        f"ORDER BY {', '.join(order)} LIMIT {sql.param(limit)} OFFSET {sql.param(query.offset)}"
    )
    return text, sql.params
