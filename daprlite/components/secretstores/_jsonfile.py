"""Reading and flattening the JSON file behind ``secretstores.local.file``.

Private to :mod:`daprlite.components.secretstores.localfile`, which calls
:func:`load_secrets` once, in a worker thread, when the store starts. The
result is the store's whole state: secret name -> the map that a get returns.
Errors are :class:`SecretsFileError` with a message fit for a user; they never
quote the file's content, which holds secrets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from json import JSONDecodeError, JSONDecoder


class _Object(list[tuple[str, object]]):
    """A JSON object as its (key, value) pairs, so that repeated keys can be reported."""


class SecretsFileError(Exception):
    """The secrets file cannot be read or does not hold usable JSON."""


def _reject_constant(name: str) -> str:
    # Python accepts NaN and Infinity; JSON (and Dapr's Go decoder) do not.
    raise ValueError(f"{name} is not valid JSON; quote it if it is meant as a string")


# Numbers are kept exactly as written ("5432", "1.50", "1e3"): a secret is a string, and
# round-tripping through float would turn "1.50" into "1.5" and "1e3" into "1000.0".
_DECODER = JSONDecoder(
    object_pairs_hook=_Object,
    parse_int=str,
    parse_float=str,
    parse_constant=_reject_constant,
)


def _text(value: object) -> str:
    """A scalar as a secret string (numbers already are their JSON text)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    # null means "no value"; the literal text "null" would be a surprising password.
    return "" if value is None else str(value)


def _children(value: object) -> Iterator[tuple[str, object]] | None:
    if isinstance(value, _Object):
        return iter(value)
    if isinstance(value, list):
        return ((str(i), item) for i, item in enumerate(value))
    return None


def flatten(value: object, separator: str) -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [true]}`` -> ``{"a{sep}b": "1", "c{sep}0": "true"}``.

    Raises :class:`SecretsFileError` when two paths flatten to the same key,
    e.g. a repeated key, or ``"a:b"`` next to ``{"a": {"b": ...}}``.
    """
    out: dict[str, str] = {}

    def visit(path: str, node: object) -> None:
        children = _children(node)
        if children is None:
            if path in out:
                raise SecretsFileError(
                    f"the key {path!r} is defined more than once "
                    f"(after flattening with nestedSeparator {separator!r})"
                )
            out[path] = _text(node)
            return
        for key, child in children:
            visit(f"{path}{separator}{key}" if path else key, child)

    visit("", value)
    return out


def parse(text: str) -> _Object:
    """The top-level JSON object of ``text``; raises :class:`SecretsFileError`."""
    try:
        document = _DECODER.decode(text)
    except JSONDecodeError as exc:
        # The message carries the position ("line 3 column 5 (char 20)"), never the text.
        raise SecretsFileError(f"not valid JSON: {exc}") from None
    except ValueError as exc:
        raise SecretsFileError(str(exc)) from None
    if not isinstance(document, _Object):
        kind = "an array" if isinstance(document, list) else "a single value"
        raise SecretsFileError(f"expected a JSON object at the top level, got {kind}")
    return document


def load_secrets(
    path: str, separator: str, multi_valued: bool
) -> tuple[str, dict[str, dict[str, str]]]:
    """Read ``path`` and return (its absolute path, secret name -> returned map).

    Single-valued: every flattened key is a secret ``{key: {key: value}}``.
    Multi-valued: every top-level key is a secret; an object or array becomes
    its flattened map, a scalar ``{key: value}``.
    """
    where = os.path.abspath(os.path.expanduser(path))
    try:
        with open(where, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as exc:
        raise SecretsFileError(f"cannot read {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SecretsFileError(f"{where}: not UTF-8 text ({exc.reason})") from None
    try:
        document = parse(text)
        if not multi_valued:
            return where, {k: {k: v} for k, v in flatten(document, separator).items()}
        secrets: dict[str, dict[str, str]] = {}
        for name, value in document:
            if name in secrets:
                raise SecretsFileError(f"the secret {name!r} is defined more than once")
            if _children(value) is None:
                secrets[name] = {name: _text(value)}
            else:
                secrets[name] = flatten(value, separator)
        return where, secrets
    except SecretsFileError as exc:
        raise SecretsFileError(f"{where}: {exc}") from None
