"""auth.sessions against real state stores, through the real state block.

Each test runs on state.sqlite (a file in tmp), on state.redis (localhost:6379),
and on state.sqlite seen as a store without transactions and without TTL, so
that the etag-only index path and the component's own expiry check are
exercised too. The revoke-all race is driven deterministically by
:class:`PausingStore`, which runs a revoke-all between the two writes of a
``create`` on a store without transactions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.blocks.auth import AuthAPI, StateBlockAccess
from daprlite.blocks.state import SaveItem, StateAPI
from daprlite.components.auth.api import AuthError, StateWrite
from daprlite.components.auth.sessions import StateSessionStore
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.state.redis import RedisStateStore
from daprlite.components.state.sqlite import SQLiteStateStore
from daprlite.runtime.registry import ComponentStore, LiveComponent
from tests.services import REDIS_HOST

SIGNING_KEY = "unit-test-signing-key-" + "k" * 32


class PlainStore(StateBlockAccess):
    """The same real store, declared without transactions and TTL."""

    def transactional(self, store: str) -> bool:
        return False

    def expires_keys(self, store: str) -> bool:
        return False


class PausingStore(PlainStore):
    """A store without transactions that runs ``between`` once, right before the first
    session record (``...:s-<hash>``) is inserted, i.e. after create's index write."""

    def __init__(self, state: StateAPI, between: Callable[[], Awaitable[None]]) -> None:
        super().__init__(state)
        self.between: Callable[[], Awaitable[None]] | None = between

    async def write(self, store: str, writes: Sequence[StateWrite]) -> None:
        hook = self.between
        if hook is not None and any(":s-" in w.key and w.insert_only for w in writes):
            self.between = None
            await hook()
        await super().write(store, writes)


@dataclass
class Env:
    backend: str
    state: StateAPI
    access: StateBlockAccess
    dump: object  # () -> str: every stored key and value, as text

    async def sessions(self, **props: str) -> StateSessionStore:
        s = StateSessionStore()
        meta = {
            "stateStore": "statestore",
            "keyPrefix": f"t{uuid.uuid4().hex[:8]}:",
            "signingKey": SIGNING_KEY,
            **props,
        }
        await s.init(ComponentMetadata("sessions", "auth.sessions", properties=meta))
        s.bind(self.access)
        return s


@pytest.fixture(params=["sqlite", "redis", "sqlite-plain"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    backend: str = request.param
    store: SQLiteStateStore | RedisStateStore
    if backend.startswith("sqlite"):
        db = tmp_path / "state.db"
        store = SQLiteStateStore()
        await store.init(
            ComponentMetadata(
                "statestore", "state.sqlite", properties={"connectionString": str(db)}
            )
        )

        def dump() -> str:
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT key, value FROM state").fetchall()
            return repr(rows)
    else:
        store = RedisStateStore()
        await store.init(
            ComponentMetadata("statestore", "state.redis", properties={"redisHost": REDIS_HOST})
        )
        import redis

        host, _, port = REDIS_HOST.partition(":")

        def dump() -> str:
            client = redis.Redis(host=host, port=int(port or 6379))
            try:
                out = []
                for key in client.scan_iter("sessions-test||*"):
                    kind = client.type(key)
                    value = client.hgetall(key) if kind == b"hash" else client.get(key)
                    out.append(repr((key, value)))
                return "\n".join(out)
            finally:
                client.close()

    components = ComponentStore()
    props = {"keyPrefix": "sessions-test"}
    kind = "state.redis" if backend == "redis" else "state.sqlite"
    components.add(LiveComponent("statestore", kind, "v1", "state", store, props))
    state = StateAPI(components, "app")
    access = PlainStore(state) if backend.endswith("plain") else StateBlockAccess(state)
    try:
        yield Env(backend, state, access, dump)
    finally:
        await store.close()


async def code_of(awaitable: object) -> str:
    with pytest.raises(AuthError) as caught:
        await awaitable  # type: ignore[misc]
    return caught.value.code


async def test_create_then_validate_returns_subject_and_claims(env: Env) -> None:
    s = await env.sessions()
    created = await s.create("alice", {"role": "admin", "n": 3}, None)
    assert len(created.session_id) == 43
    assert created.expires_at == pytest.approx(time.time() + 3600, abs=5)
    got = await s.validate(created.session_id)
    assert (got.subject, dict(got.claims)) == ("alice", {"role": "admin", "n": 3})
    other = await s.create("alice", {}, 60)
    assert other.session_id != created.session_id


async def test_the_store_holds_only_hashes_of_session_ids(env: Env) -> None:
    s = await env.sessions()
    created = await s.create("alice", {}, None)
    dumped = env.dump()  # type: ignore[operator]
    assert "s-" in dumped  # the records are there...
    assert created.session_id not in dumped  # ...but not the id itself
    assert SIGNING_KEY not in dumped


async def test_refresh_slides_the_expiry(env: Env) -> None:
    s = await env.sessions(ttl="1s")
    created = await s.create("alice", {}, None)
    await asyncio.sleep(0.6)
    refreshed = await s.refresh(created.session_id, None)
    assert refreshed.expires_at > created.expires_at + 0.5
    await asyncio.sleep(0.6)  # past the first expiry, within the refreshed one
    assert (await s.validate(created.session_id)).subject == "alice"
    longer = await s.refresh(created.session_id, 120)
    assert longer.expires_at == pytest.approx(time.time() + 120, abs=5)


async def test_refresh_never_passes_max_ttl(env: Env) -> None:
    s = await env.sessions(ttl="60s", maxTTL="90s")
    created = await s.create("alice", {}, None)
    refreshed = await s.refresh(created.session_id, 90)
    assert refreshed.expires_at <= created.created_at + 90 + 0.01
    assert await code_of(s.create("alice", {}, 91)) == "ERR_AUTH_BAD_REQUEST"


async def test_expired_session_is_refused(env: Env) -> None:
    s = await env.sessions()
    created = await s.create("alice", {}, 1)
    await asyncio.sleep(1.1)
    assert await code_of(s.validate(created.session_id)) == "ERR_AUTH_SESSION_INVALID"
    assert await code_of(s.refresh(created.session_id, None)) == "ERR_AUTH_SESSION_INVALID"


async def test_revoke_one(env: Env) -> None:
    s = await env.sessions()
    first = await s.create("alice", {}, None)
    second = await s.create("alice", {}, None)
    await s.revoke(first.session_id)
    assert await code_of(s.validate(first.session_id)) == "ERR_AUTH_SESSION_INVALID"
    assert await code_of(s.refresh(first.session_id, None)) == "ERR_AUTH_SESSION_INVALID"
    await s.revoke(first.session_id)  # idempotent
    assert (await s.validate(second.session_id)).subject == "alice"
    assert await s.revoke_subject("alice") == 1


async def test_revoke_all_sessions_of_a_subject(env: Env) -> None:
    s = await env.sessions()
    alices = [await s.create("alice", {}, None) for _ in range(3)]
    bob = await s.create("bob", {}, None)
    assert await s.revoke_subject("alice") == 3
    for session in alices:
        assert await code_of(s.validate(session.session_id)) == "ERR_AUTH_SESSION_INVALID"
    assert (await s.validate(bob.session_id)).subject == "bob"
    assert await s.revoke_subject("alice") == 0


async def test_concurrent_creates_are_all_indexed(env: Env) -> None:
    s = await env.sessions()
    created = await asyncio.gather(*(s.create("carol", {}, None) for _ in range(8)))
    assert await s.revoke_subject("carol") == 8
    for session in created:
        assert await code_of(s.validate(session.session_id)) == "ERR_AUTH_SESSION_INVALID"


async def test_revoke_all_between_the_index_and_the_record_write_is_final(env: Env) -> None:
    s = await env.sessions()
    earlier = await s.create("alice", {}, None)

    async def revoke_all() -> None:
        # The late session's index entry is written, its record is not yet.
        assert await s.revoke_subject("alice") == 1

    s.bind(PausingStore(env.state, revoke_all))
    late = await s.create("alice", {}, None)
    s.bind(env.access)
    for session in (earlier, late):
        assert await code_of(s.validate(session.session_id)) == "ERR_AUTH_SESSION_INVALID"
        assert await code_of(s.refresh(session.session_id, None)) == "ERR_AUTH_SESSION_INVALID"
    fresh = await s.create("alice", {}, None)  # sessions made after the revocation work
    assert (await s.validate(fresh.session_id)).subject == "alice"
    assert await s.revoke_subject("alice") == 1


async def test_revoke_all_before_the_index_write_lets_the_create_win(env: Env) -> None:
    s = await env.sessions()
    await s.create("alice", {}, None)
    ran: list[int] = []

    async def revoke_all() -> None:
        ran.append(await s.revoke_subject("alice"))

    class EarlyPause(PausingStore):
        async def write(self, store: str, writes: Sequence[StateWrite]) -> None:
            hook = self.between
            if hook is not None and any(":u-" in w.key for w in writes):
                self.between = None
                await hook()  # the index write below now fails its etag and is retried
            await PlainStore.write(self, store, writes)

    s.bind(EarlyPause(env.state, revoke_all))
    late = await s.create("alice", {}, None)
    s.bind(env.access)
    assert ran == [1]
    assert (await s.validate(late.session_id)).subject == "alice"
    assert await s.revoke_subject("alice") == 1


async def test_a_subject_past_max_sessions_loses_its_oldest(env: Env) -> None:
    s = await env.sessions(maxSessionsPerSubject="3")
    made = [await s.create("dave", {"n": n}, None) for n in range(5)]
    for old in made[:2]:
        assert await code_of(s.validate(old.session_id)) == "ERR_AUTH_SESSION_INVALID"
    for kept in made[2:]:
        assert (await s.validate(kept.session_id)).subject == "dave"
    assert await s.revoke_subject("dave") == 3


async def test_expired_index_entries_are_pruned_and_do_not_count(env: Env) -> None:
    s = await env.sessions(maxSessionsPerSubject="2")
    await s.create("erin", {}, 1)
    await s.create("erin", {}, 1)
    await asyncio.sleep(1.1)
    first = await s.create("erin", {}, None)
    second = await s.create("erin", {}, None)
    records, _ = s._bound()
    key = records.subject_key("erin")
    index = records.open_index(key, await records.read(key))
    assert index is not None and len(index.sessions) == 2  # the expired two are gone
    for session in (first, second):
        assert (await s.validate(session.session_id)).subject == "erin"
    assert await s.revoke_subject("erin") == 2


async def test_a_record_forged_in_the_state_store_is_refused_and_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    s = await env.sessions()
    genuine = await s.create("alice", {"role": "user"}, None)
    prefix = s._prefix
    forged_id = "F" * 43
    key = f"{prefix}s-{hashlib.sha256(forged_id.encode()).hexdigest()}"
    now = time.time()
    record = {
        "subject": "root",
        "claims": {"role": "admin"},
        "createdAt": now,
        "expiresAt": now + 600,
        "ttl": 600,
        "deadline": 0,
        "epoch": "",
    }
    data = json.dumps(record)
    forgeries = [
        json.dumps(record).encode(),  # a plain record, as before records were sealed
        json.dumps({"data": data, "mac": "00" * 32}).encode(),  # a made-up MAC
    ]
    genuine_key = f"{prefix}s-{hashlib.sha256(genuine.session_id.encode()).hexdigest()}"
    copied = await env.access.read("statestore", genuine_key)
    assert copied is not None
    forgeries.append(copied.value)  # a genuine record moved to another id's key
    caplog.set_level(logging.WARNING, logger="daprlite.component.auth")
    for value in forgeries:
        await env.state.save("statestore", [SaveItem(key, value)])
        assert await code_of(s.validate(forged_id)) == "ERR_AUTH_SESSION_INVALID"
        assert await code_of(s.refresh(forged_id, None)) == "ERR_AUTH_SESSION_INVALID"
    assert "refused" in caplog.text
    assert forged_id not in caplog.text and genuine.session_id not in caplog.text
    assert (await s.validate(genuine.session_id)).subject == "alice"


async def test_claims_with_nan_are_refused(env: Env) -> None:
    s = await env.sessions()
    assert await code_of(s.create("alice", {"x": float("nan")}, None)) == "ERR_AUTH_BAD_REQUEST"


async def test_malformed_ids_and_subjects_are_refused(env: Env) -> None:
    s = await env.sessions()
    assert await code_of(s.validate("../../etc")) == "ERR_AUTH_SESSION_INVALID"
    assert await code_of(s.validate("x" * 43)) == "ERR_AUTH_SESSION_INVALID"
    assert await code_of(s.create("", {}, None)) == "ERR_AUTH_BAD_REQUEST"
    assert await code_of(s.create("alice", {}, 0)) == "ERR_AUTH_BAD_REQUEST"


async def test_block_binds_sessions_and_checks_the_store_name(env: Env) -> None:
    components = ComponentStore()
    s = StateSessionStore()
    props = {"stateStore": "nope", "signingKey": SIGNING_KEY}
    await s.init(ComponentMetadata("sessions", "auth.sessions", properties=props))
    components.add(LiveComponent("sessions", "auth.sessions", "v1", "auth", s, props))
    with pytest.raises(Exception, match="'stateStore': no state store named 'nope'"):
        AuthAPI(components).bind(env.state)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"signingKey": SIGNING_KEY}, "stateStore"),
        ({"stateStore": "s"}, "signingKey"),
        ({"stateStore": "s", "signingKey": "short-secret"}, "signingKey"),
        ({"stateStore": "s", "signingKey": SIGNING_KEY, "ttl": "0s"}, "ttl"),
        ({"stateStore": "s", "signingKey": SIGNING_KEY, "ttl": "1h", "maxTTL": "1m"}, "maxTTL"),
        (
            {"stateStore": "s", "signingKey": SIGNING_KEY, "maxSessionsPerSubject": "0"},
            "maxSessionsPerSubject",
        ),
    ],
)
async def test_bad_metadata_names_the_field(props: dict[str, str], field: str) -> None:
    with pytest.raises(MetadataError) as bad:
        await StateSessionStore().init(ComponentMetadata("s", "auth.sessions", properties=props))
    assert bad.value.field == field
    assert "short-secret" not in str(bad.value)


async def test_settings_repr_hides_the_signing_key() -> None:
    s = StateSessionStore()
    props = {"stateStore": "s", "signingKey": SIGNING_KEY}
    await s.init(ComponentMetadata("s", "auth.sessions", properties=props))
    assert SIGNING_KEY not in repr(s.settings)
