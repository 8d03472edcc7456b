"""middleware.http.bearer: ``handle`` called directly with real tokens and real keys.

Also the pipeline around it (``blocks/middleware.py``): a middleware that fails
is logged with any session id in the path masked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import jwt
import pytest

from daprlite.blocks.middleware import Pipeline
from daprlite.components.auth.jwt import JWTValidator
from daprlite.components.auth.sessions import StateSessionStore
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest, PipelineSpec
from daprlite.components.middleware.bearer import BearerMiddleware, decode_claims
from daprlite.runtime.registry import ComponentStore, LiveComponent
from tests.integration.harness import free_port
from tests.jwks_server import JWKSServer

SECRET = "bearer-test-secret-" + "s" * 40


@pytest.fixture
async def idp() -> AsyncIterator[JWKSServer]:
    server = JWKSServer(("RS256", "ES256"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def request(*headers: tuple[str, str]) -> MiddlewareRequest:
    return MiddlewareRequest("GET", "/orders", "", tuple(headers), "caller")


async def middleware(**props: str) -> BearerMiddleware:
    m = BearerMiddleware()
    await m.init(ComponentMetadata("bearer", "middleware.http.bearer", properties=props))
    return m


async def rejection(m: BearerMiddleware, req: MiddlewareRequest) -> MiddlewareRejection:
    with pytest.raises(MiddlewareRejection) as caught:
        await m.handle(req)
    return caught.value


def header(req: MiddlewareRequest, name: str) -> list[str]:
    return [v for k, v in req.headers if k == name]


async def test_valid_token_passes_with_its_claims_and_forged_claims_are_dropped(
    idp: JWKSServer,
) -> None:
    m = await middleware(issuer=idp.url, audience="orders")  # OIDC discovery, default algs
    token = idp.token("ES256", role="admin")
    forged = "eyJzdWIiOiJyb290In0"  # {"sub":"root"}, as a caller might try
    out = await m.handle(
        request(("authorization", f"Bearer {token}"), ("x-daprlite-claims", forged))
    )
    (claims_header,) = header(out, "x-daprlite-claims")
    claims = decode_claims(claims_header)
    assert (claims["sub"], claims["role"], claims["aud"]) == ("alice", "admin", "orders")
    assert header(out, "authorization") == [f"Bearer {token}"]
    await m.close()


async def test_missing_or_non_bearer_authorization_is_401_with_a_challenge(
    idp: JWKSServer,
) -> None:
    m = await middleware(jwksURL=f"{idp.url}/jwks", audience="orders")
    for req in (
        request(),
        request(("authorization", "Basic dXNlcjpwdw==")),
        request(("authorization", "Bearer ")),
    ):
        refused = await rejection(m, req)
        assert (refused.status, refused.error_code) == (401, "ERR_AUTH_TOKEN_MISSING")
        assert dict(refused.headers)["www-authenticate"].startswith("Bearer")
    await m.close()


async def test_refused_tokens_carry_the_reason_code(idp: JWKSServer) -> None:
    m = await middleware(jwksURL=f"{idp.url}/jwks", audience="orders", leeway="1s")
    cases = {
        "ERR_AUTH_TOKEN_EXPIRED": idp.token(exp=int(time.time()) - 60),
        "ERR_AUTH_AUDIENCE": idp.token(aud="billing"),
        "ERR_AUTH_TOKEN_INVALID": jwt.encode(idp.claims(), None, algorithm="none"),
    }
    for code, token in cases.items():
        refused = await rejection(m, request(("authorization", f"Bearer {token}")))
        assert (refused.status, refused.error_code) == (401, code)
        assert 'error="invalid_token"' in dict(refused.headers)["www-authenticate"]
        assert token not in refused.message
    await m.close()


async def test_auth_component_is_found_through_bind() -> None:
    validator = JWTValidator()
    await validator.init(
        ComponentMetadata("jwt", "auth.jwt", properties={"key": SECRET, "algorithms": "HS256"})
    )
    m = await middleware(authComponent="jwt")
    m.bind(lambda name: validator if name == "jwt" else None)
    token = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    out = await m.handle(request(("authorization", f"bearer {token}")))
    assert decode_claims(header(out, "x-daprlite-claims")[0])["sub"] == "bob"
    wrong = jwt.encode(
        {"sub": "bob", "exp": int(time.time()) + 60}, SECRET + "!", algorithm="HS256"
    )
    assert (await rejection(m, request(("authorization", f"Bearer {wrong}")))).status == 401


async def test_bind_refuses_a_missing_or_wrong_component() -> None:
    m = await middleware(authComponent="jwt")
    with pytest.raises(ComponentError, match="authComponent"):
        m.bind(lambda name: None)
    sessions = StateSessionStore()  # has a validate() too, but is no token validator
    with pytest.raises(ComponentError, match="authComponent"):
        m.bind(lambda name: sessions)


async def test_unreachable_identity_provider_is_503() -> None:
    m = await middleware(jwksURL=f"http://127.0.0.1:{free_port()}/jwks", allowAnyAudience="true")
    token = JWKSServer(("RS256",)).token()
    refused = await rejection(m, request(("authorization", f"Bearer {token}")))
    assert (refused.status, refused.error_code) == (503, "ERR_AUTH_KEYS_UNAVAILABLE")
    await m.close()


async def test_metadata_without_a_validator_is_refused() -> None:
    with pytest.raises(MetadataError) as bad:
        await middleware(audience="orders")
    assert bad.value.field == "authComponent"


async def test_inline_identity_provider_needs_an_audience_or_an_explicit_waiver(
    idp: JWKSServer,
) -> None:
    for props in ({"issuer": idp.url}, {"jwksURL": f"{idp.url}/jwks"}):
        with pytest.raises(MetadataError) as bad:
            await middleware(**props)
        assert bad.value.field == "audience"
    m = await middleware(jwksURL=f"{idp.url}/jwks", allowAnyAudience="true")
    token = idp.token("ES256", aud="another-client")
    out = await m.handle(request(("authorization", f"Bearer {token}")))
    assert decode_claims(header(out, "x-daprlite-claims")[0])["aud"] == "another-client"
    await m.close()


class Broken:
    """An HTTP middleware whose handler fails with an unexpected error."""

    async def init(self, metadata: ComponentMetadata) -> None:
        return None

    async def handle(self, request: MiddlewareRequest) -> MiddlewareRequest:
        raise RuntimeError("boom")

    async def close(self) -> None:
        return None


async def test_a_failing_middleware_is_500_and_logs_no_session_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    components = ComponentStore()
    components.add(
        LiveComponent("broken", "middleware.http.broken", "v1", "middleware.http", Broken(), {})
    )
    pipeline = Pipeline("spec.httpPipeline")
    pipeline.configure([PipelineSpec("broken", "middleware.http.broken")], components)
    session_id = "Zk3" + "q" * 40
    path = f"/v1.0-alpha1/auth/sessions/sessions/{session_id}/refresh"
    caplog.set_level(logging.ERROR, logger="daprlite.middleware")
    with pytest.raises(MiddlewareRejection) as refused:
        await pipeline.run(MiddlewareRequest("POST", path, "", (), "caller"))
    assert refused.value.status == 500
    assert "middleware broken failed on POST" in caplog.text
    assert "/v1.0-alpha1/auth/sessions/sessions/***" in caplog.text
    assert session_id not in caplog.text
