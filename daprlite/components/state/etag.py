"""Etag helpers shared by the stores that issue random-UUID etags.

An etag a store could never have issued is *invalid* (400 / INVALID_ARGUMENT),
which is different from a well-formed etag that no longer matches (409 / ABORTED).
"""

from __future__ import annotations

import uuid

from daprlite.components.errors import ETagInvalidError


def check_uuid_etag(etag: str) -> None:
    """Raise ETagInvalidError unless ``etag`` is a UUID, the only etags these stores issue."""
    try:
        uuid.UUID(etag)
    except ValueError as exc:
        raise ETagInvalidError(f"etag {etag!r} is not a valid etag for this store") from exc


def new_etag() -> str:
    return str(uuid.uuid4())
