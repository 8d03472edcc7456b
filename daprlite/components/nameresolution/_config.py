"""Reading ``spec.nameResolution.configuration`` into typed settings.

Name resolvers are configured from the Configuration resource, whose
``configuration`` block is free-form YAML (numbers, lists, nested tables),
not the flat string metadata of a Component. These helpers hand the scalar
keys to :func:`daprlite.components.metadata.decode`, so the resolvers get the
same case-insensitive names and key-naming errors as every other component,
and let a resolver pick its structured keys (lists, tables) out by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import decode

T = TypeVar("T")


def scalar_text(value: object) -> str | None:
    """A YAML scalar as the string :func:`decode` parses; None for lists and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def lookup(configuration: Mapping[str, object], key: str) -> object | None:
    """The value under ``key``, matched case-insensitively as Dapr does."""
    low = key.lower()
    return next((v for k, v in configuration.items() if str(k).lower() == low), None)


def decode_scalars(
    cls: type[T],
    configuration: Mapping[str, object],
    *,
    structured: Iterable[str] = (),
    where: str = "",
) -> T:
    """Decode the scalar keys of ``configuration`` into ``cls``.

    Keys named in ``structured`` are the caller's to read; any other key that
    holds a list or a table is an error, because ``cls`` can only take a
    single value there. ``where`` prefixes field names in errors (``apps[1].``).
    """
    skip = {s.lower() for s in structured}
    properties: dict[str, str] = {}
    for key, value in configuration.items():
        name = str(key)
        if name.lower() in skip:
            continue
        text = scalar_text(value)
        if text is None:
            raise MetadataError(
                f"{where}{name}", f"expected a single value, got a {type(value).__name__}"
            )
        properties[name] = text
    try:
        return decode(cls, properties)
    except MetadataError as exc:
        if not where:
            raise
        raise MetadataError(f"{where}{exc.field}", exc.problem) from exc


def reject_unknown(
    configuration: Mapping[str, object], known: Iterable[str], *, where: str = ""
) -> None:
    """Fail on keys that are not ``known``: a misspelt key would otherwise be silently unused."""
    names = {k.lower(): k for k in known}
    for key in configuration:
        if str(key).lower() not in names:
            raise MetadataError(
                f"{where}{key}", f"is not a known key; expected one of {', '.join(names.values())}"
            )
