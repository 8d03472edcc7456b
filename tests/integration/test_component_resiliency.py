"""Resiliency policies on component targets, end to end: real sidecars, real Redis, real apps.

``components.<name>.outbound`` wraps the calls into a component (state
operations, output bindings) and ``components.<name>.inbound`` the deliveries
from an input binding to the app. Each state test starts its own Redis on a
free port, so it can pause it (SIGSTOP: connections hang), stop it (connections
are refused) and start it again while the sidecar keeps running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import Reply, call
from tests.integration.test_bindings import APPS, app_sidecar, records

REDIS_SERVER = "redis-server"


class RedisServer:
    """A throw-away redis-server on a fixed port that the test stops and starts."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        # No persistence: a restart loses every key, as the tests expect.
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, *args, "--daemonize", "no"],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused server would never see the SIGTERM
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def pause(self) -> None:
        """Freeze the server: connections stay open but no reply ever comes."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def resiliency_yaml(policies: dict[str, object], components: dict[str, object]) -> str:
    doc = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "component-policies"},
        "spec": {"policies": policies, "targets": {"components": components}},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def redis_store_sidecar(
    tmp_path: Path,
    redis: RedisServer,
    stores: list[str],
    policies: dict[str, object],
    targets: dict[str, object],
) -> SidecarProcess:
    """A sidecar with one ``state.redis`` component per name in ``stores``, all on ``redis``."""
    res = tmp_path / "res"
    res.mkdir()
    meta = {
        "redisHost": redis.host,
        # No retries inside the driver, so only the policy under test retries; and a read
        # timeout far beyond the policy's, so only the policy can end a hanging call.
        "redisMaxRetries": "-1",
        "readTimeout": "60s",
    }
    for name in stores:
        (res / f"{name}.yaml").write_text(component_yaml(name, "state.redis", meta))
    (res / "resiliency.yaml").write_text(resiliency_yaml(policies, targets))
    return SidecarProcess([res], "resilient", tmp_path / "home").wait_ready()


def state_url(sc: SidecarProcess, store: str, key: str = "") -> str:
    return f"{sc.http}/v1.0/state/{store}" + (f"/{key}" if key else "")


def save(sc: SidecarProcess, store: str, key: str, value: object, etag: str = "") -> Reply:
    item: dict[str, object] = {"key": key, "value": value}
    if etag:
        item["etag"] = etag
    return call("POST", state_url(sc, store), json=[item])


def error(reply: Reply) -> tuple[int, str, str]:
    body = reply.json()
    assert isinstance(body, dict), reply.body
    return reply.status, body["errorCode"], body["message"]


def test_timeout_policy_answers_err_state_get_while_the_store_hangs(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    sc = redis_store_sidecar(
        tmp_path,
        redis_server,
        ["orders"],
        {"timeouts": {"fast": "300ms"}},
        {"orders": {"outbound": {"timeout": "fast"}}},
    )
    try:
        assert save(sc, "orders", "o1", {"n": 1}).status == 204
        redis_server.pause()
        started = time.monotonic()
        status, code, message = error(call("GET", state_url(sc, "orders", "o1")))
        elapsed = time.monotonic() - started
        assert (status, code) == (500, "ERR_STATE_GET")
        assert "timed out after 0.3s (resiliency)" in message
        # Without the policy the call would wait for the 60 s read timeout.
        assert elapsed < 10
        redis_server.resume()
        got = call("GET", state_url(sc, "orders", "o1"))
        assert got.status == 200 and got.json() == {"n": 1}
    finally:
        sc.stop()


def test_retry_policy_saves_once_the_store_is_back_within_the_retry_window(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    sc = redis_store_sidecar(
        tmp_path,
        redis_server,
        ["orders", "plain"],
        {"retries": {"patient": {"policy": "constant", "duration": "100ms", "maxRetries": 100}}},
        {"orders": {"outbound": {"retry": "patient"}}},
    )
    try:
        redis_server.stop()
        # Without a policy the same call fails at once.
        status, code, _ = error(save(sc, "plain", "o1", "x"))
        assert (status, code) == (500, "ERR_STATE_SAVE")

        result: list[Reply] = []
        caller = threading.Thread(target=lambda: result.append(save(sc, "orders", "o2", "y")))
        caller.start()
        time.sleep(0.8)
        assert caller.is_alive(), "the save should still be retrying while Redis is down"
        redis_server.start()
        caller.join(15)
        assert result and result[0].status == 204, result and result[0].body
        got = call("GET", state_url(sc, "orders", "o2"))
        assert got.status == 200 and got.json() == "y"
    finally:
        sc.stop()


def test_circuit_breaker_opens_after_failures_answers_at_once_and_recovers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    sc = redis_store_sidecar(
        tmp_path,
        redis_server,
        ["orders"],
        {"circuitBreakers": {"cb": {"trip": "consecutiveFailures >= 3", "timeout": "2s"}}},
        {"orders": {"outbound": {"circuitBreaker": "cb"}}},
    )
    try:
        # The caller's mistakes do not count: four stale-etag saves leave the breaker closed.
        assert save(sc, "orders", "o1", "v1").status == 204
        for _ in range(4):
            status, code, _ = error(save(sc, "orders", "o1", "v2", etag="9999"))
            assert (status, code) == (409, "ERR_STATE_SAVE")
        assert call("GET", state_url(sc, "orders", "o1")).json() == "v1"

        redis_server.stop()
        for _ in range(3):
            status, code, message = error(call("GET", state_url(sc, "orders", "o1")))
            assert (status, code) == (500, "ERR_STATE_GET")
            assert "circuit breaker" not in message
        status, code, message = error(call("GET", state_url(sc, "orders", "o1")))
        assert (status, code) == (500, "ERR_STATE_GET")
        assert "circuit breaker 'cb'" in message and "is open" in message

        # The store is back, but the open breaker answers without calling it...
        redis_server.start()
        status, _, message = error(call("GET", state_url(sc, "orders", "o1")))
        assert status == 500 and "is open" in message
        # ...until its timeout has passed; then a trial call succeeds and closes it.
        time.sleep(2.2)
        assert call("GET", state_url(sc, "orders", "o1")).status == 204  # the restart lost o1
        assert save(sc, "orders", "o1", "v3").status == 204
        assert call("GET", state_url(sc, "orders", "o1")).json() == "v3"
    finally:
        sc.stop()


def _serve_http_app(port: int, record: Path, routes: str, fail_first: int) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, str(APPS / "binding_http_app.py")],
        env={
            **os.environ,
            "APP_PORT": str(port),
            "RECORD_FILE": str(record),
            "ROUTES": routes,
            "FAIL_FIRST": str(fail_first),
        },
        text=True,
    )

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(listening, 15, "the HTTP test server")
    return server


def test_output_binding_retry_policy_reaches_a_server_that_fails_twice(tmp_path: Path) -> None:
    record = tmp_path / "calls.jsonl"
    port = free_port()
    server = _serve_http_app(port, record, "orders", fail_first=2)
    res = tmp_path / "res"
    res.mkdir()
    (res / "api.yaml").write_text(
        component_yaml("api", "bindings.http", {"url": f"http://127.0.0.1:{port}"})
    )
    (res / "resiliency.yaml").write_text(
        resiliency_yaml(
            {"retries": {"thrice": {"policy": "constant", "duration": "50ms", "maxRetries": 3}}},
            {"api": {"outbound": {"retry": "thrice"}}},
        )
    )
    sc = SidecarProcess([res], "httpout", tmp_path / "home")
    try:
        sc.wait_ready()
        body = {"operation": "post", "data": {"id": 7}, "metadata": {"path": "/orders"}}
        r = call("POST", f"{sc.http}/v1.0/bindings/api", json=body)
        assert r.status == 200, r.body
        calls = records(record)
        assert len(calls) == 1 and calls[0]["attempt"] == 3  # 500, 500, then accepted
        assert json.loads(str(calls[0]["body"])) == {"id": 7}
    finally:
        sc.stop()
        server.terminate()
        server.wait(10)


def test_input_binding_inbound_retry_redelivers_to_a_failing_app(tmp_path: Path) -> None:
    """``tick`` retries within the policy; ``tock``'s policy gives up first, and the
    cron binding's own redelivery still gets the event to the app."""
    record = tmp_path / "events.jsonl"
    res = tmp_path / "res"
    res.mkdir()
    for name in ("tick", "tock"):
        (res / f"{name}.yaml").write_text(
            component_yaml(name, "bindings.cron", {"schedule": "@every 1s"})
        )
    (res / "resiliency.yaml").write_text(
        resiliency_yaml(
            {
                "retries": {
                    "thrice": {"policy": "constant", "duration": "50ms", "maxRetries": 3},
                    "once": {"policy": "constant", "duration": "50ms", "maxRetries": 1},
                }
            },
            {"tick": {"inbound": {"retry": "thrice"}}, "tock": {"inbound": {"retry": "once"}}},
        )
    )
    sc = app_sidecar(
        res,
        "croninbound",
        tmp_path,
        "binding_http_app.py",
        {"RECORD_FILE": str(record), "ROUTES": "tick,tock", "FAIL_FIRST": "3"},
    )

    def first(route: str) -> dict[str, object] | None:
        return next((r for r in records(record) if r["route"] == route), None)

    try:
        sc.wait_ready()
        wait_for(lambda: None not in (first("tick"), first("tock")), 20, "an event on both routes")
        # tick: refused 3 times inside one policy run, accepted on the 4th attempt; the
        # cron binding never saw a failed delivery.
        assert first("tick")["attempt"] == 4  # type: ignore[index]
        assert "binding 'tick': delivery of tick" not in sc.output
        # tock: the policy stopped after 2 attempts and handed the failure back to the
        # cron binding, whose own retry delivered the event.
        assert first("tock")["attempt"] == 4  # type: ignore[index]
        assert "binding 'tock': delivery of tick" in sc.output
    finally:
        sc.stop()


def test_secret_store_breaker_opens_on_store_errors_and_answers_err_secret_get(
    tmp_path: Path,
) -> None:
    res = tmp_path / "res"
    res.mkdir()
    secrets = tmp_path / "vault.json"
    secrets.write_text(json.dumps({"db-password": "s3cret"}))
    (res / "vault.yaml").write_text(
        component_yaml("vault", "secretstores.local.file", {"secretsFile": str(secrets)})
    )
    (res / "resiliency.yaml").write_text(
        resiliency_yaml(
            {"circuitBreakers": {"cb": {"trip": "consecutiveFailures >= 2", "timeout": "30s"}}},
            {"vault": {"outbound": {"circuitBreaker": "cb"}}},
        )
    )
    sc = SidecarProcess([res], "secrets", tmp_path / "home").wait_ready()
    try:
        url = f"{sc.http}/v1.0/secrets/vault"
        assert call("GET", f"{url}/db-password").json() == {"db-password": "s3cret"}
        for _ in range(2):  # a missing secret is the store's error, as in Dapr
            status, code, message = error(call("GET", f"{url}/nope"))
            assert (status, code) == (500, "ERR_SECRET_GET") and "not found" in message
        status, code, message = error(call("GET", f"{url}/db-password"))
        assert (status, code) == (500, "ERR_SECRET_GET")
        assert "circuit breaker 'cb' for component 'vault' outbound is open" in message
    finally:
        sc.stop()
