"""Pub/sub survives crashes: at-least-once delivery while the subscriber is killed.

10,000 messages go through a durable broker (``pubsub.sqlite`` and
``pubsub.redis``) from a publisher sidecar (HTTP bulk publish) to a
subscriber ``daprlite run`` (sidecar + ``apps/pubsub_crash_app.py``). While
publishing runs, the app is SIGKILLed 3 times (``daprlite run`` then exits,
as it does whenever its app dies, and is started again) and the whole
``daprlite run`` — sidecar and app — is SIGKILLed 3 times and started again.
Crashed claims come back after the broker's small visibility/processing
timeout. At the end every message was received at least once (duplicates
are counted and printed, not forbidden), and the ~1% poison messages, which
the app answers DROP, all reached the dead-letter topic.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.services import REDIS_HOST

APP = Path(__file__).resolve().parents[1] / "integration" / "apps" / "pubsub_crash_app.py"
TOTAL = 10_000
BATCH = 100
POISON = frozenset(n for n in range(TOTAL) if n % 100 == 42)  # 1%
CRASHES = ("app", "sidecar", "app", "sidecar", "app", "sidecar")


# A delivery that fails because the app is down is retried, not dead-lettered at
# once (Dapr's rule without a policy): the sidecar, stopping after its app died,
# abandons the retries, and the broker hands the message out again.
def _sqlite(root: Path) -> dict[str, str]:
    return {
        "connectionString": str(root / "broker.db"),
        "pollInterval": "20ms",
        "redeliverInterval": "100ms",
        "visibilityTimeout": "2s",  # claims of a killed sidecar come back after this
        "concurrency": "50",
    }


def _redis(root: Path) -> dict[str, str]:
    return {
        "redisHost": REDIS_HOST,
        "redeliverInterval": "200ms",
        "processingTimeout": "2s",  # pending entries of a killed consumer are re-claimed
        "concurrency": "50",
    }


BROKERS: dict[str, Callable[[Path], dict[str, str]]] = {
    "pubsub.sqlite": _sqlite,
    "pubsub.redis": _redis,
}


def _alive_app(pid: int) -> bool:
    """Is ``pid`` still one of our crash apps (and not a reused pid)?"""
    try:
        return APP.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@dataclass
class Subscriber:
    """The subscriber ``daprlite run``, started again after every crash."""

    root: Path
    resources: Path
    env: dict[str, str]
    record: Path
    runs: list[SidecarProcess] = field(default_factory=list)
    app_pids: list[int] = field(default_factory=list)

    @property
    def current(self) -> SidecarProcess:
        return self.runs[-1]

    def start(self) -> None:
        port = free_port()
        run = SidecarProcess(
            [self.resources],
            app_id="crash-subscriber",
            home=self.root / "home",
            extra_args=["--app-port", str(port)],
            command=[sys.executable, str(APP)],
            env={**self.env, "APP_PORT": str(port), "RECORD_FILE": str(self.record)},
        )
        self.runs.append(run)
        run.wait_ready()
        meta = call("GET", f"{run.http}/v1.0/metadata").json()
        assert isinstance(meta, dict)
        self.app_pids.append(int(meta["extended"]["appPID"]))
        for topic in (self.env["TOPIC"], self.env["DLQ_TOPIC"]):
            # 45 s, not 20: once in a loaded CI run a restarted subscriber took longer than
            # 20 s to report its Redis subscription (passes in ~1 s when run alone).
            wait_for(lambda t=topic: f"subscribed to pubsub/{t} " in run.output, 45, topic)

    def kill_app(self) -> None:
        os.kill(self.app_pids[-1], signal.SIGKILL)
        # `daprlite run` stops its sidecar and exits when the app dies
        self.current.proc.wait(30)

    def kill_sidecar(self) -> None:
        self.current.proc.kill()
        self.current.proc.wait(10)
        # the app is `daprlite run`'s child and outlives a SIGKILL of it
        os.kill(self.app_pids[-1], signal.SIGKILL)

    def stop(self) -> None:
        for run in self.runs:
            run.stop()
        for pid in self.app_pids:
            if _alive_app(pid):
                os.kill(pid, signal.SIGKILL)


def received(record: Path) -> tuple[list[int], list[int]]:
    """(work deliveries, dead-letter deliveries) from the app's record, in order."""
    work: list[int] = []
    dead: list[int] = []
    if record.exists():
        for line in record.read_text().splitlines():
            route, _, n = line.partition(" ")
            (work if route == "work" else dead).append(int(n))
    return work, dead


@pytest.fixture
def broker_cleanup() -> Iterator[list[str]]:
    """Redis streams the test names; deleted at the end (the shared Redis lives on)."""
    streams: list[str] = []
    yield streams
    if streams:
        host, _, port = REDIS_HOST.partition(":")
        with contextlib.closing(redis.Redis(host=host, port=int(port or 6379))) as r:
            r.delete(*streams)


@pytest.mark.parametrize("broker", list(BROKERS))
def test_every_message_arrives_despite_subscriber_crashes(
    broker: str, tmp_path: Path, broker_cleanup: list[str]
) -> None:
    run_id = uuid.uuid4().hex[:10]
    topic, dlq = f"crash-{run_id}", f"crash-{run_id}-dead"
    if broker == "pubsub.redis":
        broker_cleanup += [topic, dlq]
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(
        component_yaml("pubsub", broker, BROKERS[broker](tmp_path))
    )
    record = tmp_path / "received.txt"
    subscriber = Subscriber(
        tmp_path, resources, {"PUBSUB": "pubsub", "TOPIC": topic, "DLQ_TOPIC": dlq}, record
    )
    publisher = SidecarProcess([resources], app_id="crash-publisher", home=tmp_path / "home")
    crashes_done = 0
    publish_errors: list[str] = []
    published_at: list[float] = []

    def publish() -> None:
        # Paced by the crashes, so that every crash happens while publishing runs:
        # the batches come in len(CRASHES) + 1 slices, slice i after crash i.
        try:
            batches = TOTAL // BATCH
            for b in range(batches):
                gate = b * (len(CRASHES) + 1) // batches
                while crashes_done < gate and not publish_errors:
                    time.sleep(0.01)
                entries = [
                    {"entryId": str(n), "event": {"n": n, "poison": n in POISON}}
                    for n in range(b * BATCH, (b + 1) * BATCH)
                ]
                url = f"{publisher.http}/v1.0-alpha1/publish/bulk/pubsub/{topic}"
                reply = call(
                    "POST", url, json=entries, headers={"Content-Type": "application/json"}
                )
                if reply.status != 204:
                    publish_errors.append(f"batch {b}: {reply.status} {reply.body!r}")
                    return
                published_at.append(time.monotonic())
                time.sleep(0.02)
        except Exception as exc:  # surfaced by the assertion below
            publish_errors.append(repr(exc))

    started = time.monotonic()
    publisher_thread = threading.Thread(target=publish, daemon=True)
    try:
        publisher.wait_ready()
        subscriber.start()
        publisher_thread.start()
        crash_times: list[float] = []
        for kind in CRASHES:
            # let deliveries flow into this incarnation before killing it
            before = len(received(record)[0])
            wait_for(
                lambda b=before: len(received(record)[0]) >= b + 300 or bool(publish_errors),
                20,
                "deliveries to the restarted subscriber",
            )
            assert not publish_errors, publish_errors
            if kind == "app":
                subscriber.kill_app()
            else:
                subscriber.kill_sidecar()
            crash_times.append(time.monotonic())
            crashes_done += 1
            subscriber.start()
        publisher_thread.join(30)
        assert not publish_errors, publish_errors
        assert len(published_at) == TOTAL // BATCH
        # every crash hit while messages were still being published
        assert crash_times[-1] < published_at[-1]

        expected = set(range(TOTAL)) - POISON

        def complete() -> bool:
            work, dead = received(record)
            return expected <= set(work) and set(dead) >= POISON

        with contextlib.suppress(AssertionError):
            wait_for(complete, 30, "every message")
        work, dead = received(record)
        counts = collections.Counter(work)
        duplicates = sum(c - 1 for c in counts.values())
        missing = sorted(expected - set(work))
        dead_counts = collections.Counter(dead)
        print(
            f"\n{broker}: published {TOTAL} ({len(POISON)} poison) in "
            f"{published_at[-1] - started:.1f}s with {len(CRASHES)} crashes "
            f"({', '.join(CRASHES)}); deliveries to the app: {len(work)}, "
            f"distinct {len(counts)}, duplicates {duplicates} "
            f"(messages delivered more than once: {sum(1 for c in counts.values() if c > 1)}); "
            f"dead-letter deliveries {len(dead)}, distinct {len(dead_counts)}, "
            f"duplicates {len(dead) - len(dead_counts)}, not poison {len(set(dead) - POISON)}; "
            f"missing {len(missing)}; "
            f"done after {time.monotonic() - started:.1f}s"
        )
        assert not missing, f"{len(missing)} messages never received, e.g. {missing[:20]}"
        assert set(dead) == POISON, f"dead-letter topic: missing {sorted(POISON - set(dead))[:20]}"
        assert set(counts) == set(range(TOTAL))  # nothing unexpected arrived
    finally:
        crashes_done = len(CRASHES)  # release a publisher still waiting
        publish_errors.append("test over")
        subscriber.stop()
        publisher.stop()
        if publisher_thread.is_alive():
            publisher_thread.join(10)
