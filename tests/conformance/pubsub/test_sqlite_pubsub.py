"""``pubsub.sqlite`` beyond the shared suite: separate processes, crash recovery, cleanup, TTL.

The queue file is the broker, so "another sidecar" here is a real OS process
(``python -c``) that opens the same file through the component.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.pubsub.api import Message, PublishRequest, SubscribeRequest
from daprlite.components.pubsub.sqlite import SQLitePubSub

REPO = Path(__file__).parents[3]
FAST = {"pollInterval": "20ms", "redeliverInterval": "50ms"}


@asynccontextmanager
async def open_broker(path: Path, **props: str) -> AsyncIterator[SQLitePubSub]:
    broker = SQLitePubSub()
    await broker.init(
        ComponentMetadata(
            "pubsub", "pubsub.sqlite", properties={"connectionString": str(path), **FAST, **props}
        )
    )
    try:
        yield broker
    finally:
        await broker.close()


class Collector:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.changed = asyncio.Event()

    async def __call__(self, msg: Message) -> None:
        self.messages.append(msg)
        self.changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.messages


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(script),
        *args,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


_PUBLISHER = """
    import asyncio, sys
    from daprlite.components.metadata import ComponentMetadata
    from daprlite.components.pubsub.api import PublishRequest
    from daprlite.components.pubsub.sqlite import SQLitePubSub

    async def main(path, topic):
        broker = SQLitePubSub()
        await broker.init(ComponentMetadata("pubsub", "pubsub.sqlite",
                                            properties={"connectionString": path}))
        for i in range(5):
            await broker.publish(PublishRequest(topic, f"from-child-{i}".encode(),
                                                "text/plain", {"sender": "child"}))
        await broker.close()

    asyncio.run(main(*sys.argv[1:]))
"""

_STUCK_CONSUMER = """
    import asyncio, sys
    from daprlite.components.metadata import ComponentMetadata
    from daprlite.components.pubsub.api import SubscribeRequest
    from daprlite.components.pubsub.sqlite import SQLitePubSub

    async def main(path, topic):
        broker = SQLitePubSub()
        await broker.init(ComponentMetadata("pubsub", "pubsub.sqlite", properties={
            "connectionString": path, "pollInterval": "20ms", "visibilityTimeout": "1s"}))

        async def handler(msg):
            print("handling", msg.data.decode(), flush=True)
            await asyncio.sleep(3600)  # stuck until killed

        await broker.subscribe(SubscribeRequest(topic, "workers"), handler)
        print("subscribed", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
"""


_PRINTING_CONSUMER = """
    import asyncio, sys
    from daprlite.components.metadata import ComponentMetadata
    from daprlite.components.pubsub.api import SubscribeRequest
    from daprlite.components.pubsub.sqlite import SQLitePubSub

    async def main(path, topic):
        broker = SQLitePubSub()
        await broker.init(ComponentMetadata("pubsub", "pubsub.sqlite", properties={
            "connectionString": path, "pollInterval": "20ms"}))

        async def handler(msg):
            print(msg.data.decode(), flush=True)

        await broker.subscribe(SubscribeRequest(topic, "workers"), handler)
        print("subscribed", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await broker.close()

    asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_message_published_by_another_process_reaches_this_one(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with open_broker(path) as broker:
        inbox = Collector()
        sub = await broker.subscribe(SubscribeRequest("orders", "app-b"), inbox)
        child = await spawn(_PUBLISHER, str(path), "orders")
        assert await child.wait() == 0
        got = await inbox.wait_for(5)
        assert [m.data for m in got] == [f"from-child-{i}".encode() for i in range(5)]
        assert all(m.metadata == {"sender": "child"} for m in got)
        assert all(m.content_type == "text/plain" and m.attempt == 1 for m in got)
        await sub.close()


async def test_consumers_of_one_group_in_two_processes_each_take_a_share_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    items = {f"job-{i}" for i in range(200)}
    async with open_broker(path) as broker:
        children = [await spawn(_PRINTING_CONSUMER, str(path), "jobs") for _ in range(2)]
        for child in children:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"subscribed"
        for item in sorted(items):
            await broker.publish(PublishRequest("jobs", item.encode()))
        seen: list[list[str]] = [[], []]

        async def read(n: int) -> None:
            stdout = children[n].stdout
            assert stdout is not None
            while line := await stdout.readline():
                seen[n].append(line.decode().strip())

        readers = [asyncio.create_task(read(n)) for n in range(2)]
        async with asyncio.timeout(20):
            while set(seen[0]) | set(seen[1]) != items:
                await asyncio.sleep(0.05)
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
            assert await child.wait() == 0
        await asyncio.gather(*readers)
    assert sorted(seen[0] + seen[1]) == sorted(items)  # each exactly once: no claim was shared
    assert seen[0] and seen[1]


async def test_a_killed_consumers_claim_goes_to_another_consumer_after_the_visibility_timeout(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    async with open_broker(path) as broker:
        child = await spawn(_STUCK_CONSUMER, str(path), "jobs")
        try:
            assert child.stdout is not None
            assert (await child.stdout.readline()).strip() == b"subscribed"
            await broker.publish(PublishRequest("jobs", b"job-1"))
            line = await asyncio.wait_for(child.stdout.readline(), 10)
            assert line.strip() == b"handling job-1"
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        assert child.returncode == -signal.SIGKILL
        inbox = Collector()
        sub = await broker.subscribe(SubscribeRequest("jobs", "workers"), inbox)
        (msg,) = await inbox.wait_for(1)
        assert msg.data == b"job-1"
        assert msg.attempt == 2  # the dead consumer's delivery counted
        await sub.close()


async def test_a_closed_subscription_hands_its_unfinished_messages_back_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    async with open_broker(path) as broker:  # visibilityTimeout stays 30s
        started = asyncio.Event()

        async def stuck(msg: Message) -> None:
            started.set()
            await asyncio.sleep(3600)

        first = await broker.subscribe(SubscribeRequest("t", "g"), stuck)
        await broker.publish(PublishRequest("t", b"x"))
        await asyncio.wait_for(started.wait(), 10)
        await first.close()
        inbox = Collector()
        second = await broker.subscribe(SubscribeRequest("t", "g"), inbox)
        (msg,) = await inbox.wait_for(1, timeout=5)  # far sooner than the 30s claim
        assert msg.data == b"x"
        await second.close()


async def test_a_failed_message_comes_back_with_a_higher_attempt(tmp_path: Path) -> None:
    async with open_broker(tmp_path / "q.db") as broker:
        attempts: list[int] = []
        done = asyncio.Event()

        async def flaky(msg: Message) -> None:
            attempts.append(msg.attempt)
            if len(attempts) < 3:
                raise RuntimeError("not yet")
            done.set()

        sub = await broker.subscribe(SubscribeRequest("t", "g"), flaky)
        await broker.publish(PublishRequest("t", b"x"))
        await asyncio.wait_for(done.wait(), 10)
        assert attempts == [1, 2, 3]
        await sub.close()


async def test_a_new_group_receives_messages_published_before_it_existed(tmp_path: Path) -> None:
    async with open_broker(tmp_path / "q.db") as broker:
        await broker.publish(PublishRequest("early", b"before-anyone"))
        inbox = Collector()
        sub = await broker.subscribe(SubscribeRequest("early", "late-group"), inbox)
        (msg,) = await inbox.wait_for(1)
        assert msg.data == b"before-anyone"
        await sub.close()


async def test_no_more_handler_calls_run_at_once_than_concurrency(tmp_path: Path) -> None:
    async with open_broker(tmp_path / "q.db", concurrency="2") as broker:
        running, peak, finished = 0, 0, 0
        all_done = asyncio.Event()

        async def slow(msg: Message) -> None:
            nonlocal running, peak, finished
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.05)
            running -= 1
            finished += 1
            if finished == 8:
                all_done.set()

        sub = await broker.subscribe(SubscribeRequest("t", "g"), slow)
        for i in range(8):
            await broker.publish(PublishRequest("t", str(i).encode()))
        await asyncio.wait_for(all_done.wait(), 10)
        assert peak == 2
        await sub.close()


async def test_cleanup_removes_acknowledged_messages_and_keeps_unacknowledged_ones(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.db"
    async with open_broker(path, retention="0s", cleanupInterval="50ms") as broker:
        away = await broker.subscribe(SubscribeRequest("t", "away"), Collector())
        await away.close()  # group "away" exists but takes nothing
        inbox = Collector()
        sub = await broker.subscribe(SubscribeRequest("other", "g"), inbox)
        await broker.publish(PublishRequest("other", b"consumed"))
        await broker.publish(PublishRequest("t", b"kept"))
        await inbox.wait_for(1)
        await sub.close()
        async with asyncio.timeout(10):
            while count_rows(path, "pubsub_messages") > 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # a few more cleanup rounds
        with sqlite3.connect(path) as conn:
            left = conn.execute("SELECT data FROM pubsub_messages").fetchall()
        assert left == [(b"kept",)]
        back = Collector()
        sub = await broker.subscribe(SubscribeRequest("t", "away"), back)
        (msg,) = await back.wait_for(1)
        assert msg.data == b"kept"
        await sub.close()


async def test_an_expired_message_is_never_delivered(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with open_broker(path, cleanupInterval="0") as broker:
        group = await broker.subscribe(SubscribeRequest("t", "g"), Collector())
        await group.close()  # the group exists, so only the TTL can remove the message
        await broker.publish(PublishRequest("t", b"short-lived", metadata={"ttlInSeconds": "1"}))
        await broker.publish(PublishRequest("t", b"long-lived", metadata={"ttlInSeconds": "60"}))
        await asyncio.sleep(1.2)
        await broker.publish(PublishRequest("t", b"marker"))
        inbox = Collector()
        sub = await broker.subscribe(SubscribeRequest("t", "g"), inbox)
        await inbox.wait_for(2)
        await asyncio.sleep(0.2)
        assert [m.data for m in inbox.messages] == [b"long-lived", b"marker"]
        await sub.close()
    assert count_rows(path, "pubsub_messages") == 3  # skipped, not deleted: cleanup was off


async def test_cleanup_deletes_expired_messages(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with open_broker(path, cleanupInterval="50ms", retention="1h") as broker:
        await broker.publish(PublishRequest("t", b"x", metadata={"ttlInSeconds": "1"}))
        async with asyncio.timeout(10):
            while count_rows(path, "pubsub_messages"):
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("ttl", ["soon", "0", "-5", "99999999999"])
async def test_a_bad_ttl_is_refused_naming_the_key(tmp_path: Path, ttl: str) -> None:
    async with open_broker(tmp_path / "q.db") as broker:
        with pytest.raises(MetadataError, match="ttlInSeconds"):
            await broker.publish(PublishRequest("t", b"x", metadata={"ttlInSeconds": ttl}))


@pytest.mark.parametrize(
    ("props", "key"),
    [
        ({}, "connectionString"),
        ({"connectionString": ":memory:"}, "connectionString"),
        ({"pollInterval": "0s"}, "pollInterval"),
        ({"visibilityTimeout": "soon"}, "visibilityTimeout"),
        ({"concurrency": "0"}, "concurrency"),
        ({"redeliverInterval": "-1s"}, "redeliverInterval"),
    ],
)
async def test_bad_settings_are_refused_naming_the_key(
    tmp_path: Path, props: dict[str, str], key: str
) -> None:
    base = {} if key == "connectionString" else {"connectionString": str(tmp_path / "q.db")}
    broker = SQLitePubSub()
    with pytest.raises(MetadataError) as err:
        await broker.init(
            ComponentMetadata("pubsub", "pubsub.sqlite", properties={**base, **props})
        )
    assert err.value.field == key
    await broker.close()


async def test_messages_survive_closing_every_instance(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    async with open_broker(path) as broker:
        sub = await broker.subscribe(SubscribeRequest("t", "g"), Collector())
        await sub.close()
        await broker.publish(PublishRequest("t", b"durable"))
    assert os.path.exists(path)
    async with open_broker(path) as reopened:
        inbox = Collector()
        sub = await reopened.subscribe(SubscribeRequest("t", "g"), inbox)
        (msg,) = await inbox.wait_for(1)
        assert msg.data == b"durable"
        await sub.close()


def test_many_processes_opening_a_new_file_together_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL can fail at once with "database is locked"; init retries."""
    import subprocess
    import sys

    db = tmp_path / "fresh.db"
    script = (
        "import asyncio\n"
        "from daprlite.components.metadata import ComponentMetadata\n"
        "from daprlite.components.pubsub.sqlite import SQLitePubSub\n"
        "async def main():\n"
        "    ps = SQLitePubSub()\n"
        f"    props = {{'connectionString': {str(db)!r}}}\n"
        "    await ps.init(ComponentMetadata('p', 'pubsub.sqlite', properties=props))\n"
        "    await ps.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE) for _ in range(8)
    ]
    failures = [p.stderr.read().decode() for p in procs if p.wait(60) != 0]  # type: ignore[union-attr]
    assert failures == []
