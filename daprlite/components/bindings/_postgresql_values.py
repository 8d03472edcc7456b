"""Values in and out of ``bindings.postgresql``: JSON params to asyncpg, rows to JSON.

The binding (``bindings/postgresql.py``) receives ``params`` as a JSON array
and must bind element *i* to ``$i+1``. JSON has only numbers, strings, bools
and null, while asyncpg wants the Python type of each parameter (a ``datetime``
for a ``timestamptz``, a ``UUID`` for a ``uuid``...). Dapr's driver (pgx)
accepts, for instance, an RFC 3339 string for a timestamp, and Dapr's own docs
do so; :func:`coerce_params` converts each element to the type the server
reports for its parameter, so those requests keep working. Values are only
ever *bound*, never put into the SQL text.

:func:`encode_rows` does the reverse for ``query``: each row becomes a JSON
array of its column values (timestamps in RFC 3339, bytea in base64, numeric
as a string so no digit is lost).

Nothing here ever puts a parameter's value into an error message: params may
hold personal data, and error messages end up in logs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Protocol, TypeAlias

import asyncpg

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import parse_bool, parse_duration

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

_INT_TYPES = frozenset({"int2", "int4", "int8", "oid"})
_FLOAT_TYPES = frozenset({"float4", "float8"})
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "char", "name", "citext", "unknown"})
_JSON_TYPES = frozenset({"json", "jsonb"})
_IP_TYPES = (
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
)


class ParamType(Protocol):
    """What asyncpg reports for one parameter (``asyncpg.types.Type``)."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...


def parse_params(raw: str) -> list[JSONValue]:
    """Request metadata ``params``: a JSON array (empty or ``null`` = no parameters)."""
    if not raw.strip():
        return []
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise MetadataError(
            "params", f"is not valid JSON ({exc.args[0].split(':')[0]}); expected a JSON array"
        ) from None
    if value is None:
        return []
    if not isinstance(value, list):
        kind = type(value).__name__.replace("dict", "object").replace("str", "string")
        raise MetadataError("params", f'expected a JSON array such as [1, "a"], got a {kind}')
    return value


def coerce_params(params: Sequence[JSONValue], types: Sequence[ParamType]) -> list[object]:
    """Each JSON value converted for its parameter's type; MetadataError names the element."""
    out: list[object] = []
    for i, (value, ptype) in enumerate(zip(params, types, strict=True)):
        try:
            out.append(_coerce(value, ptype.name, ptype.kind))
        except (ValueError, TypeError, InvalidOperation, OverflowError):
            raise MetadataError(
                "params",
                f"element {i} cannot be bound to ${i + 1}, which is of type {ptype.name}",
            ) from None
    return out


def _coerce(value: JSONValue, type_name: str, kind: str) -> object:
    if value is None:
        return None
    if kind == "array" and type_name.startswith("_"):
        if not isinstance(value, list):
            raise TypeError("an array parameter needs a JSON array")
        return [_coerce(v, type_name[1:], "scalar") for v in value]
    if type_name in _INT_TYPES:
        return _integer(value)
    if type_name in _FLOAT_TYPES:
        if isinstance(value, bool):
            raise TypeError("not a number")
        return float(value) if isinstance(value, int | float | str) else _fail()
    if type_name == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise TypeError("not a number")
        return Decimal(str(value).strip())
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        return parse_bool(value) if isinstance(value, str) else _fail()
    if type_name in _TEXT_TYPES:
        return value if isinstance(value, str) else json.dumps(value)
    if type_name in _JSON_TYPES:
        # As pgx does: a string is JSON text already; anything else is encoded.
        return value if isinstance(value, str) else json.dumps(value)
    if type_name == "interval" and isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)  # a number of seconds
    if isinstance(value, str):
        return _from_string(value.strip(), type_name, value)
    return value  # let asyncpg decide (and refuse with a DataError if it must)


def _integer(value: JSONValue) -> int:
    if isinstance(value, bool):
        raise TypeError("not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # JSON has one number type: 3.0 is a fine 3
    if isinstance(value, str):
        return int(value.strip())
    raise TypeError("not an integer")


def _fail() -> object:
    raise TypeError("unsupported JSON type for this parameter")


def _from_string(text: str, type_name: str, raw: str) -> object:
    if type_name == "timestamptz":
        return datetime.fromisoformat(text)  # without an offset: UTC
    if type_name == "timestamp":
        # As PostgreSQL reads '...+02:00'::timestamp: the offset is dropped, the wall
        # clock kept.
        return datetime.fromisoformat(text).replace(tzinfo=None)
    if type_name == "date":
        try:
            return date.fromisoformat(text)
        except ValueError:
            return datetime.fromisoformat(text).date()
    if type_name in ("time", "timetz"):
        return time.fromisoformat(text)
    if type_name == "interval":
        return timedelta(seconds=parse_duration(text))
    if type_name == "uuid":
        return uuid.UUID(text)
    if type_name == "bytea":
        # PostgreSQL's own text input: '\x' + hex digits, else the string's bytes.
        if text.startswith("\\x"):
            return bytes.fromhex(text[2:])
        return raw.encode()
    return raw  # enums, inet, ranges...: asyncpg takes their text form


def rows_affected(status: str) -> int:
    """The row count of a command tag (``INSERT 0 3``, ``UPDATE 2``); 0 for ``CREATE TABLE``."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def encode_rows(rows: Sequence[Sequence[object]], json_columns: Sequence[bool]) -> bytes:
    """Rows as a JSON array of arrays; ``json_columns[i]`` marks json/jsonb text to embed."""
    out = []
    for row in rows:
        values = []
        for value, is_json in zip(row, json_columns, strict=False):
            if is_json and isinstance(value, str):
                try:
                    values.append(json.loads(value))
                    continue
                except ValueError:
                    pass
            values.append(_json_value(value))
        out.append(values)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _json_value(value: object) -> JSONValue:
    if value is None or isinstance(value, bool | int | str):
        return value  # type: ignore[return-value]
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return str(value)  # as a string: a JSON number would lose digits in most parsers
    if isinstance(value, datetime):
        return rfc3339(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return go_duration((value // timedelta(microseconds=1)) * 1000)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (uuid.UUID, *_IP_TYPES)):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, asyncpg.Range):
        return _range_text(value)
    return str(value)  # geometry, bit strings...: their text form


def _range_text(value: asyncpg.Range) -> str:
    """PostgreSQL's text form of a range: ``[1,5)``, ``(,10]``, ``empty``."""
    if value.isempty:
        return "empty"
    lower = "" if value.lower is None else str(_json_value(value.lower))
    upper = "" if value.upper is None else str(_json_value(value.upper))
    opening = "[" if value.lower_inc else "("
    closing = "]" if value.upper_inc else ")"
    return f"{opening}{lower},{upper}{closing}"


def rfc3339(when: datetime) -> str:
    """RFC 3339 like Go's ``time.RFC3339Nano``: ``Z`` for UTC, no trailing zeros in the fraction."""
    text = when.isoformat()
    text = re.sub(r"\.(\d*?)0+(?=[+-]|$)", lambda m: f".{m.group(1)}" if m.group(1) else "", text)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def go_duration(nanoseconds: int) -> str:
    """A duration written as Go's ``time.Duration.String`` does: ``1.5ms``, ``2m3.25s``, ``0s``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    n = abs(nanoseconds)
    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{_fraction(n, 3)}µs"
    if n < 1_000_000_000:
        return f"{sign}{_fraction(n, 6)}ms"
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{_fraction(rest, 9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    whole, frac = divmod(value, 10**digits)
    tail = str(frac).rjust(digits, "0").rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)
