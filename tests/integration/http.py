"""A tiny synchronous HTTP helper for tests: never raises on 4xx/5xx."""

from __future__ import annotations

import json as jsonlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> object:
        return jsonlib.loads(self.body)


def call(
    method: str,
    url: str,
    json: object = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    if json is not None:
        data = jsonlib.dumps(json).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return Reply(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, e.headers, e.read())
