"""Value helpers shared by state stores.

Stores keep values as opaque bytes; the query API needs them as JSON, so this
module decides, once, which stored bytes count as a JSON document.
"""

from __future__ import annotations

import json


def json_document(value: bytes) -> object | None:
    """The decoded JSON value of ``value``, or None when it is not JSON text."""
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
