"""Decoding component metadata into typed settings.

A component declares a frozen dataclass of settings; :func:`decode` fills it
from the Component manifest's ``spec.metadata`` (already resolved to strings by
the runtime). Names match case-insensitively, as in Dapr; a field may list
aliases; a bad or missing value raises :class:`MetadataError` naming the key.

Field options go in ``dataclasses.field(metadata=...)`` via :func:`setting`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from daprlite.components.errors import MetadataError

T = TypeVar("T")

_TRUE = {"true", "1", "yes", "y", "on", "t"}
_FALSE = {"false", "0", "no", "n", "off", "f", ""}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class Duration(float):
    """Seconds, written in metadata as a Go duration (``5s``, ``1m30s``) or plain seconds."""


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``500ms``, ``1h2m``) or a bare number of seconds."""
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    try:
        return sign * float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"{text!r} is not a duration such as '5s', '500ms' or '1m30s'")
    return sign * total


def int_metadata(metadata: Mapping[str, str], key: str, low: int, high: int) -> int | None:
    """A request-metadata integer in [low, high]; MetadataError naming ``key`` otherwise."""
    raw = metadata.get(key)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise MetadataError(key, f"expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise MetadataError(key, f"expected {low} to {high}, got {value}")
    return value


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def setting(
    default: Any = dataclasses.MISSING,
    *,
    aliases: tuple[str, ...] = (),
    required: bool = False,
    doc: str = "",
) -> Any:
    """Declare a settings field: default, aliases, whether it is required, and what it is."""
    meta = {"aliases": aliases, "required": required, "doc": doc}
    if default is dataclasses.MISSING:
        return field(default=None if not required else "", metadata=meta)
    return field(default=default, metadata=meta)


def _convert(name: str, raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw.strip() == "":
            return None
        return _convert(name, raw, args[0])
    try:
        if kind is bool:
            return parse_bool(raw)
        if kind is int:
            return int(raw.strip())
        if kind is Duration:
            return Duration(parse_duration(raw))
        if kind is float:
            return float(raw.strip())
        if kind is str:
            return raw
    except ValueError as exc:
        expected = {
            bool: "a boolean (true/false)",
            int: "an integer",
            float: "a number",
            Duration: "a duration such as '5s' or '500ms'",
        }[kind]
        raise MetadataError(name, f"expected {expected}, got {raw!r}") from exc
    raise TypeError(f"unsupported settings type {kind!r} for {name}")


def decode(cls: type[T], properties: Mapping[str, str]) -> T:
    """Build settings ``cls`` from metadata ``properties`` (case-insensitive names)."""
    lowered = {k.lower(): v for k, v in properties.items()}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        names = (f.name, *f.metadata.get("aliases", ()))
        raw = next((lowered[n.lower()] for n in names if n.lower() in lowered), None)
        if raw is None or (f.metadata.get("required") and str(raw).strip() == ""):
            if f.metadata.get("required"):
                raise MetadataError(f.name, "is required but was not given")
            continue
        values[f.name] = _convert(f.name, str(raw), hints[f.name])
    return cls(**values)


@dataclass(frozen=True, slots=True)
class ComponentMetadata:
    """What a component receives at init: its identity and resolved properties."""

    name: str
    type: str
    version: str = "v1"
    properties: Mapping[str, str] = field(default_factory=dict)
    app_id: str = ""
    namespace: str = ""

    def get(self, key: str, default: str = "") -> str:
        """Case-insensitive lookup of one property."""
        low = key.lower()
        for k, v in self.properties.items():
            if k.lower() == low:
                return v
        return default
