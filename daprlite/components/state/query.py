"""The state query language (Dapr's alpha query API), parsed once, run anywhere.

``parse_query`` turns the JSON the caller sent into a typed :class:`Query` and
raises :class:`QueryError` naming the offending field. Stores translate the
tree into their own language (SQL for sqlite/postgresql); ``evaluate`` is the
reference evaluator over Python values, used by in-process stores.

Paging is offset based: the page token is the decimal offset of the next page.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

# Page limits and tokens must fit the stores' 64-bit (or smaller) integers.
MAX_OFFSET = 2**31 - 1

COMPARISONS = ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "IN")
LOGICALS = ("AND", "OR")


class QueryError(ValueError):
    """The query text is not a valid query; the message names the field."""


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str  # one of COMPARISONS
    path: tuple[str, ...]  # dotted key split into parts
    value: JSONValue  # a list for IN


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # AND / OR
    children: tuple[Filter, ...]


Filter = Comparison | Logical


@dataclass(frozen=True, slots=True)
class SortKey:
    path: tuple[str, ...]
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Query:
    filter: Filter | None = None
    sort: tuple[SortKey, ...] = ()
    limit: int = 0  # 0 = no limit
    offset: int = 0


def _path(key: object, where: str) -> tuple[str, ...]:
    if not isinstance(key, str) or not key or any(p == "" for p in key.split(".")):
        raise QueryError(f"{where}: key must be a non-empty dotted path, got {key!r}")
    return tuple(key.split("."))


def _parse_filter(node: object, where: str) -> Filter:
    if not isinstance(node, dict) or len(node) != 1:
        raise QueryError(f"{where}: expected an object with exactly one operator")
    ((op, arg),) = node.items()
    if op in LOGICALS:
        if not isinstance(arg, list) or len(arg) < 1:
            raise QueryError(f"{where}.{op}: expected a non-empty array of filters")
        kids = tuple(_parse_filter(c, f"{where}.{op}[{i}]") for i, c in enumerate(arg))
        return Logical(op, kids)
    if op in COMPARISONS:
        if not isinstance(arg, dict) or len(arg) != 1:
            raise QueryError(f'{where}.{op}: expected an object {{"<key>": <value>}}')
        ((key, value),) = arg.items()
        if op == "IN" and not isinstance(value, list):
            raise QueryError(f"{where}.IN.{key}: expected an array of values")
        return Comparison(op, _path(key, f"{where}.{op}"), value)
    raise QueryError(
        f"{where}: unknown operator {op!r}; expected one of {', '.join(COMPARISONS + LOGICALS)}"
    )


def parse_query(raw: bytes | str | dict[str, object]) -> Query:
    """Parse and validate a query document."""
    if isinstance(raw, (bytes, str)):
        try:
            doc = json.loads(raw or b"{}")
        except ValueError as exc:
            raise QueryError(f"query: not valid JSON ({exc})") from exc
    else:
        doc = raw
    if not isinstance(doc, dict):
        raise QueryError("query: expected a JSON object")
    unknown = set(doc) - {"filter", "sort", "page"}
    if unknown:
        raise QueryError(f"query: unknown field(s) {sorted(unknown)}")
    flt = None
    if doc.get("filter"):
        flt = _parse_filter(doc["filter"], "filter")
    sort: list[SortKey] = []
    raw_sort = doc.get("sort") or []
    if not isinstance(raw_sort, list):
        raise QueryError("sort: expected an array")
    for i, s in enumerate(raw_sort):
        if not isinstance(s, dict):
            raise QueryError(f"sort[{i}]: expected an object with 'key'")
        order = str(s.get("order", "ASC")).upper()
        if order not in ("ASC", "DESC"):
            raise QueryError(f"sort[{i}].order: expected ASC or DESC, got {s.get('order')!r}")
        sort.append(SortKey(_path(s.get("key"), f"sort[{i}].key"), order == "DESC"))
    page = doc.get("page") or {}
    if not isinstance(page, dict):
        raise QueryError("page: expected an object")
    limit = page.get("limit", 0)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_OFFSET:
        raise QueryError(f"page.limit: expected a non-negative integer, got {limit!r}")
    token = page.get("token", "")
    try:
        offset = int(token) if token not in ("", None) else 0
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError
    except (TypeError, ValueError) as exc:
        raise QueryError(f"page.token: not a token this store issued: {token!r}") from exc
    return Query(flt, tuple(sort), limit, offset)


_MISSING = object()


def lookup(doc: object, path: Sequence[str]) -> object:
    """The value at ``path`` in ``doc``, or a private sentinel when absent."""
    cur = doc
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _compare(op: str, have: object, want: object) -> bool:
    if have is _MISSING:
        return op == "NEQ"
    if op == "EQ":
        return have == want
    if op == "NEQ":
        return have != want
    if op == "IN":
        return have in want  # type: ignore[operator]
    try:
        if op == "GT":
            return have > want  # type: ignore[operator]
        if op == "GTE":
            return have >= want  # type: ignore[operator]
        if op == "LT":
            return have < want  # type: ignore[operator]
        if op == "LTE":
            return have <= want  # type: ignore[operator]
    except TypeError:
        return False
    raise AssertionError(op)


def evaluate(flt: Filter | None, doc: object) -> bool:
    """Does JSON document ``doc`` satisfy ``flt``?"""
    if flt is None:
        return True
    if isinstance(flt, Logical):
        results = (evaluate(c, doc) for c in flt.children)
        return all(results) if flt.op == "AND" else any(results)
    return _compare(flt.op, lookup(doc, flt.path), flt.value)


def _rank(v: object) -> tuple[int, object]:
    # Numbers before strings before other JSON; missing/null last, so the order is total.
    if v is _MISSING or v is None:
        return (3, "")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    return (2, json.dumps(v, sort_keys=True))


def apply_sort(docs: list[T], keys: Sequence[SortKey], value_of: Callable[[T], object]) -> None:
    """Sort ``docs`` in place by ``keys``; ``value_of`` gives each entry's JSON document."""
    for k in reversed(keys):  # stable sorts, least significant key first

        def rank(doc: T, path: tuple[str, ...] = k.path) -> tuple[int, object]:
            return _rank(lookup(value_of(doc), path))

        docs.sort(key=rank, reverse=k.descending)
