"""``spec.appHttpPipeline`` on the calls a sidecar makes to its app by itself, on real sidecars.

The system (module scope):
- ``limited``: the HTTP subscriber app behind ``middleware.http.ratelimit``
  (burst 1, 2 per second), subscribed programmatically to a ``pubsub.in-memory``
  topic that redelivers a refused message after 0.2 s, with app health checks
  every 50 ms;
- ``guarded``: the same app behind ``middleware.http.bearer``, with a
  declarative subscription, a programmatic one it lists on
  ``GET /dapr/subscribe``, and two ``bindings.cron`` input bindings (one
  declared ``direction: input``, one left to the ``OPTIONS`` probe).
Deliveries, ``GET /dapr/subscribe`` and the bindings' calls go through the
pipeline keyed on the sidecar's own app id and carry no token; health probes
bypass it. Each sidecar publishes to its own in-memory bus.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call

APP = Path(__file__).parent / "apps" / "pubsub_http_app.py"
JWT_SECRET = "a-shared-secret-for-the-app-pipeline-tests-0123456789"
RATE = 2.0  # tokens per second of the limited sidecar's bucket (burst 1)

DECLARED = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: audit-sub
spec:
  pubsubname: pubsub
  topic: audit
  routes:
    default: /audit
"""


def _config(name: str, handler: str, handler_type: str) -> str:
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\n"
        f"metadata:\n  name: {name}\nspec:\n  appHttpPipeline:\n    handlers:\n"
        f"      - name: {handler}\n        type: {handler_type}\n"
    )


def _folder(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def _pubsub() -> str:
    return component_yaml("pubsub", "pubsub.in-memory", {"redeliverInterval": "0.2s"})


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _received(record: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in _lines(record) if line]


@dataclass
class Subscriber:
    sidecar: SidecarProcess
    record: Path  # one line per delivery the app received
    probes: Path  # one line per health probe the app answered
    started: float  # time.monotonic() before the sidecar started


@dataclass
class System:
    limited: Subscriber
    guarded: Subscriber


def _subscriber(
    root: Path, app_id: str, resources: Path, config: Path, subs: list[dict[str, str]]
) -> Subscriber:
    port = free_port()
    record, probes = root / f"{app_id}-got.jsonl", root / f"{app_id}-probes.txt"
    started = time.monotonic()
    sidecar = SidecarProcess(
        [resources],
        app_id=app_id,
        home=root / "home",
        extra_args=[
            "--app-port",
            str(port),
            "--config",
            str(config),
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "0.05",
            "--app-health-threshold",
            "1",
        ],
        command=[sys.executable, str(APP)],
        env={
            "APP_PORT": str(port),
            "RECORD_FILE": str(record),
            "PROBE_FILE": str(probes),
            "SUBSCRIPTIONS": json.dumps(subs),
        },
    )
    return Subscriber(sidecar, record, probes, started)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("app-pipeline")
    limit = component_yaml(
        "applimit", "middleware.http.ratelimit", {"maxRequestsPerSecond": str(RATE), "burst": "1"}
    )
    limited_res = _folder(root, "limited", {"pubsub.yaml": _pubsub(), "limit.yaml": limit})
    limited_cfg = root / "limited.yaml"
    limited_cfg.write_text(_config("limited", "applimit", "middleware.http.ratelimit"))
    guarded_res = _folder(
        root,
        "guarded",
        {
            "pubsub.yaml": _pubsub(),
            "audit.yaml": DECLARED,
            "jwt.yaml": component_yaml(
                "tokens", "auth.jwt", {"key": JWT_SECRET, "algorithms": "HS256"}
            ),
            "bearer.yaml": component_yaml(
                "bearer", "middleware.http.bearer", {"authComponent": "tokens"}
            ),
            "tick.yaml": component_yaml(
                "tick", "bindings.cron", {"schedule": "@every 1s", "direction": "input"}
            ),
            "tock.yaml": component_yaml("tock", "bindings.cron", {"schedule": "@every 1s"}),
        },
    )
    guarded_cfg = root / "guarded.yaml"
    guarded_cfg.write_text(_config("guarded", "bearer", "middleware.http.bearer"))
    orders = [{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}]
    started: list[Subscriber] = []
    try:
        limited = _subscriber(root, "limited", limited_res, limited_cfg, orders)
        started.append(limited)
        guarded = _subscriber(root, "guarded", guarded_res, guarded_cfg, orders)
        started.append(guarded)
        for sub in started:
            sub.sidecar.wait_ready()
        yield System(limited, guarded)
    finally:
        for sub in started:
            sub.sidecar.stop()


def _publish(sidecar: SidecarProcess, topic: str, data: object) -> None:
    resp = call(
        "POST",
        f"{sidecar.http}/v1.0/publish/pubsub/{topic}",
        data=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert resp.status == 204, resp.body


def _refused(sidecar: SidecarProcess, topic: str) -> list[str]:
    """The sidecar's log lines of deliveries of ``topic`` the broker must hand out again."""
    return [line for line in sidecar.lines if "redelivering" in line and f"of {topic}" in line]


# -- ratelimit ---------------------------------------------------------------------------------


def test_deliveries_refused_by_the_app_ratelimit_are_redelivered_not_lost(system: System) -> None:
    sub = system.limited
    wait_for(lambda: "subscribed to pubsub/orders" in sub.sidecar.output, 20, "the subscription")
    for n in range(3):  # at once: the bucket holds one token, so some must be refused
        _publish(sub.sidecar, "orders", {"n": n})
    wait_for(lambda: len(_received(sub.record)) >= 3, 30, "the three messages")
    assert _refused(sub.sidecar, "orders"), "no delivery was refused by the limiter"
    time.sleep(0.5)  # a refused delivery that also reached the app would show up as a duplicate
    got = sorted(e["event"]["data"]["n"] for e in _received(sub.record))  # type: ignore[index]
    assert got == [0, 1, 2]
    assert {e["path"] for e in _received(sub.record)} == {"/orders"}


def test_health_probes_bypass_the_app_ratelimit(system: System) -> None:
    sub = system.limited

    def limiter_allowance() -> float:
        # The most calls a bucket of 1 refilling at RATE/s can have let through so far.
        return 1 + RATE * (time.monotonic() - sub.started)

    wait_for(
        lambda: len(_lines(sub.probes)) > limiter_allowance() + 10,
        20,
        "more health probes than the limiter would let through",
    )
    # Probes before the app listened failed; since then the app has stayed healthy
    # (one failed probe marks it unhealthy), however many deliveries were refused.
    changes = [
        line
        for line in sub.sidecar.lines
        if "marking it unhealthy" in line or "the app is healthy again" in line
    ]
    assert not changes or "healthy again" in changes[-1]


# -- bearer ------------------------------------------------------------------------------------


def test_app_bearer_refuses_subscription_discovery_so_only_declared_subscriptions_start(
    system: System,
) -> None:
    out = system.guarded.sidecar
    wait_for(lambda: "subscribed to pubsub/audit" in out.output, 20, "the declared subscription")
    assert "GET /dapr/subscribe answered 401" in out.output
    assert "subscribed to pubsub/orders" not in out.output


def test_app_bearer_refuses_deliveries_which_carry_no_token_and_keeps_them(
    system: System,
) -> None:
    sub = system.guarded
    wait_for(lambda: "subscribed to pubsub/audit" in sub.sidecar.output, 20, "the subscription")
    _publish(sub.sidecar, "audit", {"n": 1})
    wait_for(lambda: len(_refused(sub.sidecar, "audit")) >= 2, 20, "two refused deliveries")
    assert not [r for r in _received(sub.record) if r["path"] == "/audit"]


def test_app_bearer_refuses_input_binding_events_as_the_apps_error(system: System) -> None:
    out = system.guarded.sidecar

    def failed_ticks() -> list[str]:
        return [line for line in out.lines if "binding tick: app answered 401 on /tick" in line]

    wait_for(lambda: len(failed_ticks()) >= 2, 20, "two refused cron events")
    assert not [r for r in _received(system.guarded.record) if r["path"] == "/tick"]
    # The binding without a declared direction is probed with OPTIONS, which is refused too.
    assert "input binding tock: the app has no route /tock; not started" in out.output
