"""Parsing what the caller names: the target app id and the method path.

The method path is decoded and normalised here, once, at the edge where a
call enters daprlite. Every later hop — the callee sidecar's access control
and the app itself — sees exactly this normalised path, so ``a/%2F../b``
tricks cannot make the check and the app disagree about what was called.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote, unquote

from daprlite import errors

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_APP_ID = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$")
# Characters kept as they are when the method is written back into a URL path.
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


def decode_once(raw: str, field: str) -> str:
    """Percent-decode ``raw`` exactly once; a malformed escape is the caller's error."""
    if _BAD_ESCAPE.search(raw):
        raise errors.DIRECT_INVOKE_BAD_REQUEST(
            f"{field} {raw!r} holds a malformed percent-escape (expected % and two hex digits)"
        )
    return unquote(raw, errors="strict") if "%" in raw else raw


def normalise_method(decoded: str) -> str:
    """Collapse ``//``, resolve ``.`` and ``..`` (never above the root), drop the trailing ``/``."""
    if _CONTROL.search(decoded):
        raise errors.DIRECT_INVOKE_BAD_REQUEST("method must not contain control characters")
    if not decoded.strip("/"):
        return ""
    clean = posixpath.normpath("/" + decoded)
    # normpath keeps a leading "//" (POSIX allows it to mean something else).
    return clean.lstrip("/")


def method_from_raw(raw: str) -> str:
    """The normalised method from its raw (still escaped) form in a URL path."""
    try:
        return normalise_method(decode_once(raw, "method"))
    except UnicodeDecodeError as exc:
        raise errors.DIRECT_INVOKE_BAD_REQUEST(
            f"method {raw!r} does not decode to UTF-8 text"
        ) from exc


def method_to_path(method: str) -> str:
    """The URL path (with its leading ``/``) under which an HTTP app receives ``method``."""
    return "/" + quote(method, safe=_PATH_SAFE)


def split_target(target: str, own_namespace: str) -> tuple[str, str]:
    """``orders`` -> (orders, own namespace); ``orders.prod`` -> (orders, prod)."""
    if not target:
        raise errors.DIRECT_INVOKE(
            "failed getting app id either from the URL path or the header dapr-app-id"
        )
    parts = target.split(".")
    if len(parts) > 2:
        raise errors.DIRECT_INVOKE_BAD_REQUEST(
            f"invalid app id {target!r}: expected 'app' or 'app.namespace' (at most one dot)"
        )
    app_id = parts[0]
    namespace = parts[1] if len(parts) == 2 else own_namespace
    if not _APP_ID.match(app_id) or (len(parts) == 2 and not _APP_ID.match(namespace)):
        raise errors.DIRECT_INVOKE_BAD_REQUEST(
            f"invalid app id {target!r}: use letters, digits, '-' and '_'"
        )
    return app_id, namespace


def same_namespace(a: str, b: str) -> bool:
    """Namespaces "" and "default" are the same (standalone vs. Kubernetes default)."""
    return (a or "default") == (b or "default")
