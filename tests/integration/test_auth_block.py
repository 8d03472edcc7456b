"""The auth block through a real sidecar: every HTTP route and the gRPC Auth service.

One ``daprlite run`` process (module scope) with:
- ``jwt``: auth.jwt on the test JWKS server (tests/jwks_server.py, in a thread);
- ``hs``: auth.jwt with an HS256 secret read through secretKeyRef;
- ``sessions``: auth.sessions on state.sqlite, validating tokens with ``jwt``, its
  ``signingKey`` read through secretKeyRef.
The sidecar runs with API logging and debug logs; the last test greps its
whole output for the secret, the tokens and the session ids used.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest

from daprlite._proto.daprlite.runtime.v1 import auth_pb2, auth_pb2_grpc
from daprlite.testing import component_yaml
from tests.integration.harness import SidecarProcess
from tests.integration.http import Reply, call
from tests.jwks_server import JWKSServer, new_key

ROOT = Path(__file__).resolve().parents[2]
HS_SECRET = "integration-hs256-secret-" + "q" * 40
SIGNING_KEY = "integration-session-signing-key-" + "m" * 40
# Every credential the tests send; none may ever show in the sidecar's output.
SEEN: list[str] = []


@pytest.fixture(scope="module")
def idp() -> Iterator[JWKSServer]:
    server = JWKSServer()
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop_thread()


@pytest.fixture(scope="module")
def sidecar(idp: JWKSServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    root = tmp_path_factory.mktemp("auth")
    res = root / "resources"
    res.mkdir()
    (res / "secrets.yaml").write_text(
        component_yaml("envsecrets", "secretstores.local.env", {"prefix": "AUTHTEST_"})
    )
    (res / "state.yaml").write_text(
        component_yaml("statestore", "state.sqlite", {"connectionString": str(root / "s.db")})
    )
    (res / "jwt.yaml").write_text(
        component_yaml(
            "jwt",
            "auth.jwt",
            {
                "jwksURL": f"{idp.url}/jwks",
                "issuer": idp.url,
                "audience": "orders",
                "algorithms": "RS256,PS256,ES256,EdDSA",
                "jwksMinRefreshInterval": "0s",
            },
        )
    )
    hs = component_yaml("hs", "auth.jwt", {"algorithms": "HS256"})
    hs = hs.replace(
        "  metadata:\n",
        "  metadata:\n  - name: key\n    secretKeyRef: {name: HS_KEY, key: HS_KEY}\n",
        1,
    )
    (res / "hs.yaml").write_text(hs)
    sessions = component_yaml(
        "sessions",
        "auth.sessions",
        {"stateStore": "statestore", "validator": "jwt", "ttl": "1h"},
    )
    sessions = sessions.replace(
        "  metadata:\n",
        "  metadata:\n  - name: signingKey\n"
        "    secretKeyRef: {name: SESSIONS_KEY, key: SESSIONS_KEY}\n",
        1,
    )
    (res / "sessions.yaml").write_text(sessions)
    proc = SidecarProcess(
        [res],
        app_id="authapp",
        home=root / "home",
        extra_args=["--enable-api-logging", "--log-level", "debug"],
        env={"AUTHTEST_HS_KEY": HS_SECRET, "AUTHTEST_SESSIONS_KEY": SIGNING_KEY},
    )
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()


def url(sidecar: SidecarProcess, path: str) -> str:
    return f"{sidecar.http}/v1.0-alpha1/auth/{path}"


def token(idp: JWKSServer, alg: str = "RS256", **extra: object) -> str:
    t = idp.token(alg, **extra)
    SEEN.append(t)
    return t


def error(reply: Reply) -> str:
    body = reply.json()
    assert isinstance(body, dict) and body["message"]
    return str(body["errorCode"])


# -- validate ---------------------------------------------------------------------------------
def test_validate_with_bearer_header_and_with_json_body(
    sidecar: SidecarProcess, idp: JWKSServer
) -> None:
    t = token(idp)
    by_header = call("POST", url(sidecar, "jwt/validate"), headers={"Authorization": f"Bearer {t}"})
    assert by_header.status == 200
    claims = by_header.json()["claims"]  # type: ignore[index]
    assert (claims["sub"], claims["aud"], claims["iss"]) == ("alice", "orders", idp.url)
    by_body = call("POST", url(sidecar, "jwt/validate"), json={"token": token(idp, "EdDSA")})
    assert by_body.status == 200 and by_body.json()["claims"]["sub"] == "alice"  # type: ignore[index]


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("expired", "ERR_AUTH_TOKEN_EXPIRED"),
        ("not-yet-valid", "ERR_AUTH_TOKEN_NOT_YET_VALID"),
        ("audience", "ERR_AUTH_AUDIENCE"),
        ("issuer", "ERR_AUTH_ISSUER"),
        ("unknown-kid", "ERR_AUTH_KEY_NOT_FOUND"),
        ("alg-none", "ERR_AUTH_TOKEN_INVALID"),
        ("tampered", "ERR_AUTH_TOKEN_INVALID"),
    ],
)
def test_refused_tokens_are_401_with_their_code(
    sidecar: SidecarProcess, idp: JWKSServer, case: str, code: str
) -> None:
    now = int(time.time())
    forged = {
        "expired": lambda: token(idp, exp=now - 600),
        "not-yet-valid": lambda: token(idp, nbf=now + 600),
        "audience": lambda: token(idp, aud="billing"),
        "issuer": lambda: token(idp, iss="https://evil.example"),
        "unknown-kid": lambda: new_key("RS256").sign(idp.claims()),
        "alg-none": lambda: jwt.encode(idp.claims(), None, algorithm="none"),
        "tampered": lambda: token(idp)[:-6] + "AAAAAA",
    }[case]()
    SEEN.append(forged)
    reply = call(
        "POST", url(sidecar, "jwt/validate"), headers={"Authorization": f"Bearer {forged}"}
    )
    assert (reply.status, error(reply)) == (401, code)
    assert forged not in reply.body.decode()


def test_rotated_out_key_is_refused_after_the_jwks_rotates(
    sidecar: SidecarProcess, idp: JWKSServer
) -> None:
    old = token(idp, "ES256")
    assert call("POST", url(sidecar, "jwt/validate"), json={"token": old}).status == 200
    _, new = idp.rotate("ES256")
    fresh = new.sign(idp.claims())
    SEEN.append(fresh)
    assert call("POST", url(sidecar, "jwt/validate"), json={"token": fresh}).status == 200
    refused = call("POST", url(sidecar, "jwt/validate"), json={"token": old})
    assert (refused.status, error(refused)) == (401, "ERR_AUTH_KEY_NOT_FOUND")


def test_hs256_key_from_a_secret_store(sidecar: SidecarProcess) -> None:
    good = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, HS_SECRET, algorithm="HS256")
    bad = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, "guess" * 10, algorithm="HS256")
    SEEN.extend([good, bad])
    ok = call("POST", url(sidecar, "hs/validate"), json={"token": good})
    assert ok.status == 200 and ok.json()["claims"]["sub"] == "bob"  # type: ignore[index]
    refused = call("POST", url(sidecar, "hs/validate"), json={"token": bad})
    assert (refused.status, error(refused)) == (401, "ERR_AUTH_TOKEN_INVALID")


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "code"),
    [
        ("jwt/validate", {}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("jwt/validate", {"data": b"{not json"}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("jwt/validate", {"json": ["token"]}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("jwt/validate", {"json": {"token": 42}}, 400, "ERR_AUTH_BAD_REQUEST"),
        (
            "jwt/validate",
            {"headers": {"Authorization": "Basic Ym9iOnB3"}},
            400,
            "ERR_AUTH_BAD_REQUEST",
        ),
        ("nope/validate", {"json": {"token": "x.y.z"}}, 404, "ERR_AUTH_COMPONENT_NOT_FOUND"),
        ("sessions/validate", {"json": {"token": "x.y.z"}}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("jwt/sessions", {"json": {"subject": "a"}}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("sessions/sessions", {"json": {}}, 400, "ERR_AUTH_BAD_REQUEST"),
        (
            "sessions/sessions",
            {"json": {"subject": "a", "token": "x"}},
            400,
            "ERR_AUTH_BAD_REQUEST",
        ),
        (
            "sessions/sessions",
            {"json": {"subject": "a", "claims": [1]}},
            400,
            "ERR_AUTH_BAD_REQUEST",
        ),
        (
            "sessions/sessions",
            {"json": {"subject": "a", "ttlInSeconds": "60"}},
            400,
            "ERR_AUTH_BAD_REQUEST",
        ),
        (
            "sessions/sessions",
            {"json": {"subject": "a", "ttlInSeconds": 0}},
            400,
            "ERR_AUTH_BAD_REQUEST",
        ),
        ("sessions/sessions", {"data": b"]"}, 400, "ERR_AUTH_BAD_REQUEST"),
        ("nope/sessions", {"json": {"subject": "a"}}, 404, "ERR_AUTH_COMPONENT_NOT_FOUND"),
    ],
)
def test_bad_input_is_4xx_naming_the_problem(
    sidecar: SidecarProcess, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    reply = call("POST", url(sidecar, path), **kwargs)  # type: ignore[arg-type]
    assert (reply.status, error(reply)) == (status, code)


# -- sessions ---------------------------------------------------------------------------------
def test_session_lifecycle_over_http(sidecar: SidecarProcess, idp: JWKSServer) -> None:
    created = call("POST", url(sidecar, "sessions/sessions"), json={"token": token(idp)})
    assert created.status == 201
    body = created.json()
    assert isinstance(body, dict)
    sid = body["sessionId"]
    SEEN.append(sid)
    assert body["subject"] == "alice" and body["claims"]["aud"] == "orders"
    assert body["expiresAt"] == pytest.approx(time.time() + 3600, abs=10)

    got = call("GET", url(sidecar, f"sessions/sessions/{sid}"))
    assert got.status == 200 and got.json()["subject"] == "alice"  # type: ignore[index]

    refreshed = call(
        "POST", url(sidecar, f"sessions/sessions/{sid}/refresh"), json={"ttlInSeconds": 7200}
    )
    assert refreshed.status == 200
    assert refreshed.json()["expiresAt"] == pytest.approx(time.time() + 7200, abs=10)  # type: ignore[index]
    empty_body = call("POST", url(sidecar, f"sessions/sessions/{sid}/refresh"))
    assert empty_body.status == 200

    deleted = call("DELETE", url(sidecar, f"sessions/sessions/{sid}"))
    assert deleted.status == 204 and deleted.body == b""
    gone = call("GET", url(sidecar, f"sessions/sessions/{sid}"))
    assert (gone.status, error(gone)) == (401, "ERR_AUTH_SESSION_INVALID")
    again = call("POST", url(sidecar, f"sessions/sessions/{sid}/refresh"))
    assert (again.status, error(again)) == (401, "ERR_AUTH_SESSION_INVALID")


def test_session_from_a_refused_token_is_401(sidecar: SidecarProcess, idp: JWKSServer) -> None:
    expired = token(idp, exp=int(time.time()) - 600)
    reply = call("POST", url(sidecar, "sessions/sessions"), json={"token": expired})
    assert (reply.status, error(reply)) == (401, "ERR_AUTH_TOKEN_EXPIRED")


def test_revoke_every_session_of_a_subject(sidecar: SidecarProcess) -> None:
    ids = []
    for n in range(3):
        r = call(
            "POST",
            url(sidecar, "sessions/sessions"),
            json={"subject": "user/7", "claims": {"n": n}, "ttlInSeconds": 600},
        )
        assert r.status == 201
        ids.append(r.json()["sessionId"])  # type: ignore[index]
    SEEN.extend(ids)
    assert call("GET", url(sidecar, f"sessions/sessions/{ids[1]}")).json()["claims"] == {"n": 1}  # type: ignore[index]
    revoked = call("DELETE", url(sidecar, "sessions/subjects/user%2F7/sessions"))
    assert revoked.status == 200 and revoked.json() == {"revoked": 3}
    for sid in ids:
        assert call("GET", url(sidecar, f"sessions/sessions/{sid}")).status == 401
    assert call("DELETE", url(sidecar, "sessions/subjects/user%2F7/sessions")).json() == {
        "revoked": 0
    }


DEEP = b"[" * 200_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("jwt/validate", DEEP),
        ("sessions/sessions", DEEP),
        ("sessions/sessions/" + "A" * 43 + "/refresh", DEEP),
        ("sessions/sessions", b'{"subject": "a", "claims": {"x": NaN}}'),
        ("sessions/sessions", b'{"subject": "a", "claims": {"x": -Infinity}}'),
        ("sessions/sessions", b'{"subject": "a", "claims": ' + b'{"a":' * 80 + b"1" + b"}" * 81),
    ],
)
def test_deep_or_non_finite_json_is_400_naming_the_body(
    sidecar: SidecarProcess, path: str, body: bytes
) -> None:
    reply = call("POST", url(sidecar, path), data=body)
    assert (reply.status, error(reply)) == (400, "ERR_AUTH_BAD_REQUEST")
    assert str(reply.json()["message"]).startswith("body:")  # type: ignore[index]


def test_a_session_forged_through_the_state_api_is_refused(sidecar: SidecarProcess) -> None:
    genuine = call("POST", url(sidecar, "sessions/sessions"), json={"subject": "mallory"})
    assert genuine.status == 201
    genuine_id = str(genuine.json()["sessionId"])  # type: ignore[index]
    forged_id = "forged" + "Z" * 37
    SEEN.extend([genuine_id, forged_id])

    def key(session_id: str) -> str:
        return f"sessions:s-{hashlib.sha256(session_id.encode()).hexdigest()}"

    stored = call("GET", f"{sidecar.http}/v1.0/state/statestore/{key(genuine_id)}")
    assert stored.status == 200 and SIGNING_KEY not in stored.body.decode()
    now = time.time()
    plain = {
        "subject": "root",
        "claims": {"role": "admin"},
        "createdAt": now,
        "expiresAt": now + 600,
        "ttl": 600,
        "deadline": 0,
    }
    forgeries: list[object] = [
        plain,  # the record as an app would write it
        {"data": json.dumps({**plain, "epoch": ""}), "mac": "ab" * 32},  # a made-up MAC
        stored.json(),  # a genuine sealed record, moved to another id's key
    ]
    for value in forgeries:
        saved = call(
            "POST",
            f"{sidecar.http}/v1.0/state/statestore",
            json=[{"key": key(forged_id), "value": value}],
        )
        assert saved.status == 204
        got = call("GET", url(sidecar, f"sessions/sessions/{forged_id}"))
        assert (got.status, error(got)) == (401, "ERR_AUTH_SESSION_INVALID")
        again = call("POST", url(sidecar, f"sessions/sessions/{forged_id}/refresh"))
        assert (again.status, error(again)) == (401, "ERR_AUTH_SESSION_INVALID")
    assert call("GET", url(sidecar, f"sessions/sessions/{genuine_id}")).status == 200
    assert "a session record is refused" in sidecar.output


def test_malformed_session_id_is_401(sidecar: SidecarProcess) -> None:
    reply = call("GET", url(sidecar, "sessions/sessions/short"))
    assert (reply.status, error(reply)) == (401, "ERR_AUTH_SESSION_INVALID")


# -- gRPC ------------------------------------------------------------------------------------
def _reason(error: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


async def test_grpc_auth_service_through_the_generated_stubs(
    sidecar: SidecarProcess, idp: JWKSServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        stub = auth_pb2_grpc.AuthStub(channel)
        t = token(idp, "PS256")
        reply = await stub.ValidateToken(
            auth_pb2.ValidateTokenRequest(component_name="jwt", token=t)
        )
        assert json.loads(reply.claims_json)["sub"] == "alice"

        cases = [
            (
                auth_pb2.ValidateTokenRequest(component_name="jwt", token=token(idp, exp=1)),
                grpc.StatusCode.UNAUTHENTICATED,
                "ERR_AUTH_TOKEN_EXPIRED",
            ),
            (
                auth_pb2.ValidateTokenRequest(component_name="jwt"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "ERR_AUTH_BAD_REQUEST",
            ),
            (
                auth_pb2.ValidateTokenRequest(component_name="nope", token="a.b.c"),
                grpc.StatusCode.NOT_FOUND,
                "ERR_AUTH_COMPONENT_NOT_FOUND",
            ),
        ]
        for request, status, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ValidateToken(request)
            assert (caught.value.code(), _reason(caught.value)) == (status, code)

        created = await stub.CreateSession(
            auth_pb2.CreateSessionRequest(
                component_name="sessions",
                subject="grpc-user",
                claims_json=b'{"plan":"pro"}',
                ttl_in_seconds=60,
            )
        )
        SEEN.append(created.session_id)
        assert created.subject == "grpc-user" and json.loads(created.claims_json) == {"plan": "pro"}
        got = await stub.ValidateSession(
            auth_pb2.SessionRequest(component_name="sessions", session_id=created.session_id)
        )
        assert got.expires_at == created.expires_at
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await stub.CreateSession(
                auth_pb2.CreateSessionRequest(
                    component_name="sessions", subject="x", claims_json=b"["
                )
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for claims_json in (b"[" * 200_000, b'{"x": NaN}'):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await stub.CreateSession(
                    auth_pb2.CreateSessionRequest(
                        component_name="sessions", subject="x", claims_json=claims_json
                    )
                )
            assert (bad.value.code(), _reason(bad.value)) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "ERR_AUTH_BAD_REQUEST",
            )
            assert "claims_json" in str(bad.value.details())


async def test_python_auth_client(sidecar: SidecarProcess, idp: JWKSServer) -> None:
    sys.path.insert(0, str(ROOT / "clients" / "python"))
    try:
        from daprlite_client import AuthClient, AuthRefused
    finally:
        sys.path.remove(str(ROOT / "clients" / "python"))
    async with AuthClient(f"127.0.0.1:{sidecar.grpc_port}", timeout=10) as auth:
        t = token(idp, "ES256")
        assert (await auth.validate("jwt", t))["sub"] == "alice"
        with pytest.raises(AuthRefused) as refused:
            await auth.validate("jwt", token(idp, aud="billing"))
        assert refused.value.error_code == "ERR_AUTH_AUDIENCE"

        session = await auth.create_session("sessions", token=token(idp))
        SEEN.append(session.session_id)
        assert session.subject == "alice" and session.claims["aud"] == "orders"
        refreshed = await auth.refresh_session("sessions", session.session_id, ttl_seconds=90)
        assert refreshed.expires_at <= int(time.time()) + 91
        await auth.create_session("sessions", subject="alice")
        assert await auth.revoke_subject("sessions", "alice") >= 2
        with pytest.raises(AuthRefused) as gone:
            await auth.validate_session("sessions", session.session_id)
        assert gone.value.error_code == "ERR_AUTH_SESSION_INVALID"
        await auth.revoke_session("sessions", session.session_id)  # already gone: fine


# -- last: nothing secret in the metadata API or the logs ---------------------------------------
def test_metadata_lists_auth_components_without_their_key(sidecar: SidecarProcess) -> None:
    reply = call("GET", f"{sidecar.http}/v1.0/metadata")
    assert reply.status == 200
    components = {c["name"]: c["type"] for c in reply.json()["components"]}  # type: ignore[index]
    assert components["jwt"] == "auth.jwt"
    assert components["hs"] == "auth.jwt"
    assert components["sessions"] == "auth.sessions"
    assert HS_SECRET not in reply.body.decode()


def test_no_secret_token_or_session_id_in_the_sidecar_output(sidecar: SidecarProcess) -> None:
    output = sidecar.output
    assert "HTTP API Called" in output  # API logging was on, so paths were logged
    assert "/sessions/***" in output  # ...with session ids masked
    assert HS_SECRET not in output
    assert SIGNING_KEY not in output
    assert len(SEEN) > 20
    leaked = [s for s in SEEN if s in output]
    assert leaked == []


async def test_api_token_guards_the_auth_service_even_with_the_own_app_id(
    tmp_path: Path,
) -> None:
    res = tmp_path / "resources"
    res.mkdir()
    (res / "hs.yaml").write_text(
        component_yaml("hs", "auth.jwt", {"algorithms": "HS256", "key": HS_SECRET})
    )
    proc = SidecarProcess(
        [res], app_id="tokenapp", home=tmp_path / "home", env={"DAPR_API_TOKEN": "s3cret-api"}
    )
    good = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, HS_SECRET, algorithm="HS256")
    try:
        proc.wait_ready()
        assert (
            call("POST", f"{proc.http}/v1.0-alpha1/auth/hs/validate", json={"token": good}).status
            == 401
        )
        ok = call(
            "POST",
            f"{proc.http}/v1.0-alpha1/auth/hs/validate",
            json={"token": good},
            headers={"dapr-api-token": "s3cret-api"},
        )
        assert ok.status == 200
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.grpc_port}") as channel:
            stub = auth_pb2_grpc.AuthStub(channel)
            request = auth_pb2.ValidateTokenRequest(component_name="hs", token=good)
            # The own app id marks the last hop of gRPC proxying, which skips the token
            # check; it must not open daprlite's own API.
            for metadata in ((), (("dapr-app-id", "tokenapp"),)):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.ValidateToken(request, metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            reply = await stub.ValidateToken(request, metadata=(("dapr-api-token", "s3cret-api"),))
            assert json.loads(reply.claims_json)["sub"] == "bob"
    finally:
        proc.stop()
    assert HS_SECRET not in proc.output
