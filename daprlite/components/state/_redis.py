"""Redis plumbing behind ``state.redis``: the Lua write script, etags and TTL.

``components/state/redis.py`` holds the settings and the store; this private
module holds what the store sends to Redis. Every write (a save, a delete or a
whole transaction) is one call of :data:`WRITE_SCRIPT`, which Redis runs
atomically: it checks every operation's etag / first-write condition first and
only then applies all of them, so a failed check writes nothing. Connecting
(settings, pool, TLS) is shared with the other Redis components, in
:mod:`daprlite.components._redis_common`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from daprlite.components.errors import ETagInvalidError
from daprlite.components.state.api import Concurrency, SetRequest, TransactionOperation

# Each operation takes KEYS[i] and five ARGV slots: kind ("set"/"del"),
# check ("" none, "etag", "first-write"), etag, value, ttl seconds (> 0 sets
# EXPIRE, anything else PERSIST). Returns 0 when everything was applied, or the
# 1-based index of the first operation whose condition failed (then nothing
# was written). The check loop also reads every key's version so that a key
# holding a non-hash value fails the script before anything is written.
WRITE_SCRIPT = """
local width = 5
for i = 1, #KEYS do
  local base = (i - 1) * width
  local version = redis.call("HGET", KEYS[i], "version")
  if version and not tonumber(version) then
    return redis.error_reply("key " .. KEYS[i] .. " has a non-integer version field")
  end
  local check = ARGV[base + 2]
  if check == "etag" then
    if version ~= ARGV[base + 3] then return i end
  elseif check == "first-write" then
    if version then return i end
  end
end
for i = 1, #KEYS do
  local base = (i - 1) * width
  if ARGV[base + 1] == "del" then
    redis.call("DEL", KEYS[i])
  else
    redis.call("HSET", KEYS[i], "data", ARGV[base + 4])
    redis.call("HINCRBY", KEYS[i], "version", 1)
    if tonumber(ARGV[base + 5]) > 0 then
      redis.call("EXPIRE", KEYS[i], ARGV[base + 5])
    else
      redis.call("PERSIST", KEYS[i])
    end
  end
end
return 0
"""

_VERSION_ETAG = re.compile(r"-?[0-9]+")


def check_version_etag(etag: str) -> None:
    """Raise ETagInvalidError unless ``etag`` is a decimal integer, the only etags issued."""
    if not _VERSION_ETAG.fullmatch(etag):
        raise ETagInvalidError(f"etag {etag!r} is not a valid etag for this store (an integer)")


def encode_operations(
    operations: Sequence[TransactionOperation], default_ttl: int | None
) -> tuple[list[str], list[str | bytes]]:
    """KEYS and ARGV of :data:`WRITE_SCRIPT`; validates every etag before anything runs."""
    keys: list[str] = []
    args: list[str | bytes] = []
    for op in operations:
        if op.etag is not None:
            check_version_etag(op.etag)
            check = "etag"
        elif isinstance(op, SetRequest) and op.concurrency == Concurrency.FIRST_WRITE:
            check = "first-write"
        else:
            check = ""
        keys.append(op.key)
        if isinstance(op, SetRequest):
            ttl = op.ttl_seconds if op.ttl_seconds is not None else default_ttl
            args += ["set", check, op.etag or "", op.value, str(max(ttl or 0, 0))]
        else:
            args += ["del", check, op.etag or "", b"", "0"]
    return keys, args


def mismatch_message(op: TransactionOperation) -> str:
    """Why the write script refused ``op``."""
    if op.etag is None:
        return f"key {op.key!r} already exists (first-write)"
    return f"etag mismatch for key {op.key!r}"


def expire_metadata(expiry: int, absolute: bool, now: float) -> dict[str, str]:
    """``{"ttlExpireTime": ...}`` from PEXPIRETIME (absolute ms) or PTTL (relative ms).

    Negative replies mean "no TTL" (-1) or "no key" (-2): no metadata then.
    The format is Dapr's: RFC 3339 in UTC, to the second, ending in ``Z``.
    """
    if expiry < 0:
        return {}
    at_ms = expiry if absolute else now * 1000 + expiry
    when = datetime.fromtimestamp(at_ms / 1000, UTC)
    return {"ttlExpireTime": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def read_script(has_expiretime: bool) -> str:
    """One atomic read: the hash's data and version, and the key's expiry.

    A single EVALSHA costs the client about half of a MULTI/EXEC pipeline of
    HMGET + PEXPIRETIME (bench/RESULTS.md), and is just as atomic. Before
    Redis 7 there is no PEXPIRETIME, so the remaining time (PTTL) is read.
    """
    expiry = "PEXPIRETIME" if has_expiretime else "PTTL"
    return (
        "return {redis.call('HMGET', KEYS[1], 'data', 'version'), "
        f"redis.call('{expiry}', KEYS[1])}}"
    )
