"""HTTP middleware pipelines on real sidecars: ``appHttpPipeline`` and ``httpPipeline``.

The system (module scope, all sidecars sharing one run folder):
- ``limited``: the HTTP echo app behind a sidecar whose ``--config`` puts
  ``middleware.http.ratelimit`` (2 requests at once, then one per 10 s, so no
  test depends on timing) on its app pipeline;
- ``secured``: the echo app behind ``middleware.http.bearer``, which validates
  tokens with an HS256 ``auth.jwt`` component;
- ``caller`` and ``caller2``: sidecars without apps; the test plays their
  apps, over HTTP and with the official SDK over gRPC;
- ``apilimited``: a sidecar without app whose own HTTP API sits behind a
  ratelimit ``httpPipeline``.
The home holds a CA, so the sidecars talk mTLS and the callees know each
caller's app id for sure: the app pipeline's ratelimit gives each its own
bucket (unverified callers share their address's bucket).
Readiness is checked without calling through the pipelines (the callee
sidecars' health and the apps' ports), so every bucket starts full.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import pytest
from dapr.clients import DaprClient
from dapr.conf import settings
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from daprlite.security.ca import create_ca, write_ca
from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess, free_port, wait_for
from tests.integration.http import call
from tests.integration.invoke_system import HTTP_APP

JWT_SECRET = "a-shared-secret-for-the-middleware-tests-0123456789"


def _config(name: str, section: str, handlers: list[tuple[str, str]]) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Configuration",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  {section}:",
        "    handlers:",
    ]
    for handler, ctype in handlers:
        lines += [f"      - name: {handler}", f"        type: {ctype}"]
    return "\n".join(lines) + "\n"


def _folder(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir()
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def _ratelimit(name: str) -> str:
    return component_yaml(
        name, "middleware.http.ratelimit", {"maxRequestsPerSecond": "0.1", "burst": "2"}
    )


@dataclass
class System:
    caller: SidecarProcess
    caller2: SidecarProcess
    limited: SidecarProcess
    secured: SidecarProcess
    apilimited: SidecarProcess

    def all(self) -> list[SidecarProcess]:
        return [self.caller, self.caller2, self.limited, self.secured, self.apilimited]


def _with_app(app_id: str, home: Path, resources: Path, config: Path) -> tuple[SidecarProcess, int]:
    port = free_port()
    proc = SidecarProcess(
        [resources],
        app_id=app_id,
        home=home,
        extra_args=["--app-port", str(port), "--config", str(config)],
        command=HTTP_APP,
        env={"APP_PORT": str(port)},
    )
    return proc, port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("middleware")
    home = root / "home"
    write_ca(create_ca(), home / "certs")
    empty = _folder(root, "empty", {})
    limited_res = _folder(root, "limited", {"ratelimit.yaml": _ratelimit("applimit")})
    limited_cfg = root / "limited-config.yaml"
    limited_cfg.write_text(
        _config("limited", "appHttpPipeline", [("applimit", "middleware.http.ratelimit")])
    )
    secured_res = _folder(
        root,
        "secured",
        {
            "jwt.yaml": component_yaml(
                "tokens", "auth.jwt", {"key": JWT_SECRET, "algorithms": "HS256"}
            ),
            "bearer.yaml": component_yaml(
                "bearer", "middleware.http.bearer", {"authComponent": "tokens"}
            ),
        },
    )
    secured_cfg = root / "secured-config.yaml"
    secured_cfg.write_text(
        _config("secured", "appHttpPipeline", [("bearer", "middleware.http.bearer")])
    )
    api_res = _folder(root, "api", {"ratelimit.yaml": _ratelimit("apilimit")})
    api_cfg = root / "api-config.yaml"
    api_cfg.write_text(_config("api", "httpPipeline", [("apilimit", "middleware.http.ratelimit")]))

    started: list[SidecarProcess] = []
    try:
        limited, limited_port = _with_app("limited", home, limited_res, limited_cfg)
        started.append(limited)
        secured, secured_port = _with_app("secured", home, secured_res, secured_cfg)
        started.append(secured)
        caller = SidecarProcess([empty], app_id="caller", home=home)
        started.append(caller)
        caller2 = SidecarProcess([empty], app_id="caller2", home=home)
        started.append(caller2)
        apilimited = SidecarProcess(
            [api_res], app_id="apilimited", home=home, extra_args=["--config", str(api_cfg)]
        )
        started.append(apilimited)
        for proc in started:
            proc.wait_ready()
        wait_for(lambda: _listening(limited_port), 30, "the limited app's port")
        wait_for(lambda: _listening(secured_port), 30, "the secured app's port")
        yield System(caller, caller2, limited, secured, apilimited)
    finally:
        for proc in started:
            proc.stop()


def _token(claims: dict[str, object], secret: str = JWT_SECRET) -> str:
    return jwt.encode({"exp": int(time.time()) + 300, **claims}, secret, algorithm="HS256")


# -- appHttpPipeline: ratelimit -----------------------------------------------------------


def test_app_pipeline_ratelimit_refuses_an_http_caller_past_its_burst(system: System) -> None:
    url = f"{system.caller.http}/v1.0/invoke/limited/method/orders/1"
    first, second = call("POST", url, json={"n": 1}), call("POST", url, json={"n": 2})
    assert (first.status, second.status) == (200, 200)
    assert first.json()["path"] == "/orders/1"  # type: ignore[index]
    refused = call("POST", url, json={"n": 3})
    assert refused.status == 429
    body = refused.json()
    assert isinstance(body, dict) and body["errorCode"] == "ERR_RATE_LIMITED"
    assert "0.1 per second" in body["message"] and "'applimit'" in body["message"]
    assert refused.headers["Content-Type"].startswith("application/json")
    assert refused.headers["Retry-After"] == "10"


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated")
def test_app_pipeline_ratelimit_refuses_a_grpc_sdk_caller_past_its_burst(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "DAPR_HTTP_PORT", system.caller2.http_port)
    monkeypatch.setattr(settings, "DAPR_GRPC_PORT", system.caller2.grpc_port)
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 10)
    monkeypatch.setattr(settings, "DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient(address=f"127.0.0.1:{system.caller2.grpc_port}") as client:
        # caller2 has a bucket of its own, whatever the other caller used.
        for n in range(2):
            resp = client.invoke_method("limited", f"orders/{n}", data="{}", http_verb="POST")
            assert json.loads(resp.text())["path"] == f"/orders/{n}"
        with pytest.raises(grpc.RpcError) as err:
            client.invoke_method("limited", "orders/2", data="{}", http_verb="POST")
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.metadata["http.code"] == "429"
    assert "ERR_RATE_LIMITED" in info.metadata["http.error_message"]


# -- appHttpPipeline: bearer ----------------------------------------------------------------


def test_app_pipeline_bearer_refuses_a_call_without_a_token(system: System) -> None:
    resp = call("GET", f"{system.caller.http}/v1.0/invoke/secured/method/profile")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = resp.json()
    assert isinstance(body, dict) and body["errorCode"].startswith("ERR_AUTH_")


def test_app_pipeline_bearer_refuses_a_forged_token(system: System) -> None:
    forged = _token({"sub": "mallory"}, secret="not-the-secret-" + "x" * 40)
    resp = call(
        "GET",
        f"{system.caller.http}/v1.0/invoke/secured/method/profile",
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert resp.status == 401
    assert "mallory" not in resp.body.decode()


def test_app_pipeline_bearer_passes_a_good_token_and_the_claims_to_the_app(
    system: System,
) -> None:
    forged_claims = base64.urlsafe_b64encode(b'{"sub":"admin"}').decode().rstrip("=")
    resp = call(
        "GET",
        f"{system.caller.http}/v1.0/invoke/secured/method/profile",
        headers={
            "Authorization": f"Bearer {_token({'sub': 'alice', 'role': 'reader'})}",
            "x-daprlite-claims": forged_claims,
        },
    )
    assert resp.status == 200
    seen = resp.json()
    assert isinstance(seen, dict)
    raw = seen["headers"]["x-daprlite-claims"]
    claims = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    assert (claims["sub"], claims["role"]) == ("alice", "reader")
    assert raw != forged_claims


# -- httpPipeline: ratelimit on the sidecar's own API ----------------------------------------


def test_api_pipeline_limits_api_calls_but_never_health_probes(system: System) -> None:
    url = system.apilimited.http
    first = call("GET", f"{url}/v1.0/metadata")
    assert first.status == 200
    listed = {(c["name"], c["type"]) for c in first.json()["components"]}  # type: ignore[index]
    assert ("apilimit", "middleware.http.ratelimit") in listed
    assert call("GET", f"{url}/v1.0/metadata").status == 200
    refused = call("GET", f"{url}/v1.0/metadata")
    assert refused.status == 429
    assert refused.json()["errorCode"] == "ERR_RATE_LIMITED"  # type: ignore[index]
    assert refused.headers["Retry-After"] == "10"
    # Other API routes share the caller's bucket; unknown paths too.
    assert call("GET", f"{url}/v1.0/state/nothing/k").status == 429
    for _ in range(5):
        assert call("GET", f"{url}/v1.0/healthz").status == 204
        assert call("GET", f"{url}/v1.0/healthz/outbound").status == 204


def test_middleware_components_are_listed_by_the_metadata_api(system: System) -> None:
    meta = call("GET", f"{system.limited.http}/v1.0/metadata").json()
    assert isinstance(meta, dict)
    listed = {(c["name"], c["type"]) for c in meta["components"]}
    assert ("applimit", "middleware.http.ratelimit") in listed


# -- bad configuration --------------------------------------------------------------------


def test_a_handler_naming_a_missing_component_stops_the_sidecar(tmp_path: Path) -> None:
    resources = _folder(tmp_path, "res", {"ratelimit.yaml": _ratelimit("present")})
    config = tmp_path / "config.yaml"
    config.write_text(
        _config(
            "bad",
            "appHttpPipeline",
            [("present", "middleware.http.ratelimit"), ("absent", "middleware.http.ratelimit")],
        )
    )
    proc = SidecarProcess(
        [resources], app_id="bad", home=tmp_path / "home", extra_args=["--config", str(config)]
    )
    try:
        code = proc.wait_exit(30)
    finally:
        proc.stop()
    assert code != 0
    line = next(line for line in proc.lines if "Failed to start" in line)
    assert "spec.appHttpPipeline.handlers[1].name" in line and "'absent'" in line
