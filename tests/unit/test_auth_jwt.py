"""auth.jwt against a real JWKS server (tests/jwks_server.py) with real keys.

The JWT attack set, each refused with its own ERR_AUTH_* code, then the
algorithms, leeway, OIDC discovery, required claims, and the JWKS cache: a
refetch when a new kid appears after a rotation, and a rate limit on refetches
triggered by unknown kids. Keys are fetched over https only (http to loopback for
these tests), never through a redirect, and an identity provider's tokens need
an audience unless ``allowAnyAudience`` says otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from daprlite.components.auth.api import AuthError
from daprlite.components.auth.jwt import JWTValidator
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata
from tests.integration.harness import free_port
from tests.jwks_server import JWKSServer, new_key

SECRET = "a-shared-secret-long-enough-for-hs512-" + "x" * 32


@pytest.fixture
async def idp() -> AsyncIterator[JWKSServer]:
    server = JWKSServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def detour(idp: JWKSServer) -> AsyncIterator[str]:
    """A second server on 127.0.0.1: ``/moved`` redirects to the IdP's JWKS, and its
    discovery document names a plain-http jwks_uri on a non-loopback host."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{idp.url}/jwks")

    async def discovery(request: web.Request) -> web.Response:
        base = f"http://{request.host}"
        return web.json_response({"issuer": base, "jwks_uri": "http://idp.example.com/jwks"})

    app = web.Application()
    app.router.add_get("/moved", moved)
    app.router.add_get("/.well-known/openid-configuration", discovery)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def validator(**props: str) -> JWTValidator:
    v = JWTValidator()
    await v.init(ComponentMetadata("jwt", "auth.jwt", properties=props))
    return v


async def refused(v: JWTValidator, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await v.validate(token)
    assert token not in caught.value.message
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(claims: dict[str, object], secret: bytes, kid: str = "") -> str:
    """An HS256 token signed with any bytes (pyjwt refuses a PEM key as an HMAC secret)."""
    header: dict[str, str] = {"alg": "HS256", "typ": "JWT"}
    if kid:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


async def jwks_validator(idp: JWKSServer, **extra: str) -> JWTValidator:
    props = {
        "jwksURL": f"{idp.url}/jwks",
        "issuer": idp.url,
        "audience": "orders",
        "algorithms": "RS256,PS256,ES256,EdDSA",
        **extra,
    }
    return await validator(**props)


# -- the attack set -----------------------------------------------------------------------
async def test_alg_none_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    unsigned = jwt.encode(idp.claims(), None, algorithm="none")
    assert (await refused(v, unsigned)).code == "ERR_AUTH_TOKEN_INVALID"
    # The same with a signature part attached and another spelling.
    header = b64(json.dumps({"alg": "NONE", "kid": idp.key("RS256").kid}).encode())
    forged = f"{header}.{b64(json.dumps(idp.claims()).encode())}.c2ln"
    assert (await refused(v, forged)).code == "ERR_AUTH_TOKEN_INVALID"
    await v.close()


async def test_rs256_public_key_used_as_hs256_secret_is_refused(idp: JWKSServer) -> None:
    rsa_key = idp.key("RS256")
    pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = hs256_by_hand(idp.claims(), pem, kid=rsa_key.kid)
    # A static PEM key with RS256 allowed: HS256 is not in the allow-list.
    static = await validator(key=pem.decode(), algorithms="RS256", audience="orders")
    assert (await refused(static, forged)).code == "ERR_AUTH_TOKEN_INVALID"
    # Even when a careless allow-list names HS256, a JWKS (public keys) never verifies it.
    careless = await jwks_validator(idp, algorithms="RS256,HS256")
    assert (await refused(careless, forged)).code == "ERR_AUTH_TOKEN_INVALID"
    await careless.close()
    # And a PEM key configured together with HS256 does not even start.
    with pytest.raises(MetadataError) as bad:
        await validator(key=pem.decode(), algorithms="RS256,HS256")
    assert bad.value.field == "algorithms"
    # The genuine RS256 token is accepted by the static validator.
    assert (await static.validate(idp.token("RS256")))["sub"] == "alice"


async def test_expired_token_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, leeway="5s")
    token = idp.token(exp=int(time.time()) - 30)
    assert (await refused(v, token)).code == "ERR_AUTH_TOKEN_EXPIRED"
    await v.close()


async def test_not_yet_valid_token_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, leeway="5s")
    token = idp.token(nbf=int(time.time()) + 120)
    assert (await refused(v, token)).code == "ERR_AUTH_TOKEN_NOT_YET_VALID"
    await v.close()


async def test_wrong_audience_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, audience="orders,billing")
    assert (await refused(v, idp.token(aud="payments"))).code == "ERR_AUTH_AUDIENCE"
    assert (await v.validate(idp.token(aud=["x", "billing"])))["sub"] == "alice"
    await v.close()


async def test_wrong_issuer_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    bad = idp.token(iss="https://evil.example")
    assert (await refused(v, bad)).code == "ERR_AUTH_ISSUER"
    await v.close()


async def test_unknown_kid_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    stranger = new_key("RS256")  # a real key the identity provider never published
    token = stranger.sign(idp.claims())
    assert (await refused(v, token)).code == "ERR_AUTH_KEY_NOT_FOUND"
    await v.close()


async def test_tampered_signature_and_payload_are_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    token = idp.token()
    head, payload, sig = token.split(".")
    flipped = sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")
    assert (await refused(v, f"{head}.{payload}.{flipped}")).code == "ERR_AUTH_TOKEN_INVALID"
    richer = b64(json.dumps(idp.claims(sub="admin")).encode())
    assert (await refused(v, f"{head}.{richer}.{sig}")).code == "ERR_AUTH_TOKEN_INVALID"
    assert (await refused(v, "not-a-jwt")).code == "ERR_AUTH_TOKEN_INVALID"
    assert (await refused(v, "a.b.c")).code == "ERR_AUTH_TOKEN_INVALID"
    await v.close()


async def test_token_of_a_rotated_out_key_is_refused_after_the_jwks_rotated(
    idp: JWKSServer,
) -> None:
    v = await jwks_validator(idp, jwksMinRefreshInterval="0s")
    old_token = idp.token("RS256")
    assert (await v.validate(old_token))["sub"] == "alice"
    _, new = idp.rotate("RS256")
    new_token = new.sign(idp.claims())
    # The new kid is unknown to the cache: one refetch picks it up.
    assert (await v.validate(new_token))["sub"] == "alice"
    assert idp.jwks_fetches == 2
    # The old key is gone from the JWKS, so its (still unexpired) token is refused.
    assert (await refused(v, old_token)).code == "ERR_AUTH_KEY_NOT_FOUND"
    await v.close()


async def test_algorithm_outside_the_allow_list_is_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, algorithms="RS256")
    assert (await refused(v, idp.token("ES256"))).code == "ERR_AUTH_TOKEN_INVALID"
    assert (await refused(v, idp.token("PS256"))).code == "ERR_AUTH_TOKEN_INVALID"
    await v.close()


async def test_key_of_the_wrong_type_for_the_kid_is_refused(idp: JWKSServer) -> None:
    # An ES256 token naming the RSA key's kid: the key decides the algorithm family.
    v = await jwks_validator(idp)
    token = idp.key("ES256").sign(idp.claims(), kid=idp.key("RS256").kid)
    assert (await refused(v, token)).code == "ERR_AUTH_KEY_NOT_FOUND"
    await v.close()


# -- positives ------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_algorithms_with_a_shared_secret(alg: str) -> None:
    v = await validator(key=SECRET, algorithms="HS256,HS384,HS512")
    now = int(time.time())
    token = jwt.encode({"sub": "bob", "exp": now + 60}, SECRET, algorithm=alg)
    assert (await v.validate(token))["sub"] == "bob"
    wrong = jwt.encode({"sub": "bob", "exp": now + 60}, SECRET + "x", algorithm=alg)
    assert (await refused(v, wrong)).code == "ERR_AUTH_TOKEN_INVALID"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_asymmetric_algorithms_from_the_jwks(idp: JWKSServer, alg: str) -> None:
    v = await jwks_validator(idp)
    claims = await v.validate(idp.token(alg))
    assert claims["sub"] == "alice" and claims["aud"] == "orders"
    await v.close()


async def test_a_secret_key_refuses_asymmetric_algorithms_at_init() -> None:
    with pytest.raises(MetadataError) as bad:
        await validator(key=SECRET, algorithms="HS256,RS256")
    assert bad.value.field == "algorithms"


async def test_leeway_accepts_small_clock_skew(idp: JWKSServer) -> None:
    token = idp.token(exp=int(time.time()) - 20)
    lenient = await jwks_validator(idp)  # default leeway 60s
    assert (await lenient.validate(token))["sub"] == "alice"
    strict = await jwks_validator(idp, leeway="1s")
    assert (await refused(strict, token)).code == "ERR_AUTH_TOKEN_EXPIRED"
    await lenient.close()
    await strict.close()


async def test_oidc_discovery_from_the_issuer(idp: JWKSServer) -> None:
    v = await validator(issuer=idp.url, algorithms="RS256", audience="orders")
    assert (await v.validate(idp.token()))["iss"] == idp.url
    assert (await v.validate(idp.token()))["sub"] == "alice"
    assert (idp.discovery_fetches, idp.jwks_fetches) == (1, 1)
    await v.close()


async def test_required_claims_names_and_values(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, requiredClaims="email, tenant=acme, roles=admin")
    good = idp.token(email="a@x", tenant="acme", roles=["user", "admin"])
    assert (await v.validate(good))["tenant"] == "acme"
    missing = idp.token(tenant="acme", roles=["admin"])
    assert (await refused(v, missing)).code == "ERR_AUTH_CLAIMS"
    wrong_value = idp.token(email="a@x", tenant="other", roles=["admin"])
    assert (await refused(v, wrong_value)).code == "ERR_AUTH_CLAIMS"
    no_role = idp.token(email="a@x", tenant="acme", roles=["user"])
    assert (await refused(v, no_role)).code == "ERR_AUTH_CLAIMS"
    await v.close()


async def test_expiry_is_required_by_default(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    claims = idp.claims()
    del claims["exp"]
    token = idp.key("RS256").sign(claims)
    assert (await refused(v, token)).code == "ERR_AUTH_CLAIMS"
    optional = await jwks_validator(idp, requireExpiry="false")
    assert (await optional.validate(token))["sub"] == "alice"
    await v.close()
    await optional.close()


async def test_refetches_on_unknown_kids_are_rate_limited(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, jwksMinRefreshInterval="1h")
    assert (await v.validate(idp.token()))["sub"] == "alice"
    assert idp.jwks_fetches == 1
    for _ in range(5):
        forged = new_key("RS256").sign(idp.claims())
        assert (await refused(v, forged)).code == "ERR_AUTH_KEY_NOT_FOUND"
    assert idp.jwks_fetches == 1  # no refetch within the interval
    # A rotation is not seen within the interval either: the new kid waits for it.
    _, new = idp.rotate("RS256")
    assert (await refused(v, new.sign(idp.claims()))).code == "ERR_AUTH_KEY_NOT_FOUND"
    assert idp.jwks_fetches == 1
    await v.close()


async def test_unknown_kid_refetches_at_most_once_per_interval(idp: JWKSServer) -> None:
    v = await jwks_validator(idp, jwksMinRefreshInterval="0.3s")
    await v.validate(idp.token())
    forged = new_key("RS256").sign(idp.claims())
    await refused(v, forged)
    await refused(v, forged)
    assert idp.jwks_fetches == 1  # both within 0.3s of the first fetch
    time.sleep(0.35)
    await refused(v, forged)
    assert idp.jwks_fetches == 2
    await v.close()


async def test_unreachable_identity_provider_is_keys_unavailable() -> None:
    v = await validator(
        jwksURL=f"http://127.0.0.1:{free_port()}/jwks", algorithms="RS256", audience="orders"
    )
    token = new_key("RS256").sign({"sub": "x", "exp": int(time.time()) + 60})
    assert (await refused(v, token)).code == "ERR_AUTH_KEYS_UNAVAILABLE"
    await v.close()


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"key": SECRET}, "algorithms"),
        ({"key": SECRET, "algorithms": "none"}, "algorithms"),
        ({"key": SECRET, "algorithms": "HS257"}, "algorithms"),
        ({"algorithms": "RS256"}, "key"),
        ({"algorithms": "RS256", "jwksURL": "https://idp.example.com/jwks"}, "audience"),
        ({"algorithms": "RS256", "issuer": "https://idp.example.com"}, "audience"),
        (
            {"algorithms": "RS256", "jwksURL": "http://idp.example.com/jwks", "audience": "a"},
            "jwksURL",
        ),
        ({"algorithms": "RS256", "jwksURL": "file:///etc/jwks", "audience": "a"}, "jwksURL"),
        ({"algorithms": "RS256", "issuer": "http://10.0.0.8/realm", "audience": "a"}, "issuer"),
        (
            {"algorithms": "RS256", "jwksURL": "https://x/j", "allowAnyAudience": "maybe"},
            "allowAnyAudience",
        ),
        ({"key": SECRET, "algorithms": "HS256", "leeway": "soon"}, "leeway"),
        (
            {
                "key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----",
                "algorithms": "RS256",
            },
            "key",
        ),
    ],
)
async def test_bad_metadata_names_the_field(props: dict[str, str], field: str) -> None:
    with pytest.raises(MetadataError) as bad:
        await validator(**props)
    assert bad.value.field == field
    assert SECRET not in str(bad.value)


async def test_settings_repr_hides_the_key() -> None:
    v = await validator(key=SECRET, algorithms="HS256")
    assert SECRET not in repr(v.settings)


async def test_identity_provider_tokens_for_any_audience_only_when_allowed(
    idp: JWKSServer,
) -> None:
    v = await validator(jwksURL=f"{idp.url}/jwks", algorithms="RS256", allowAnyAudience="true")
    assert (await v.validate(idp.token(aud="some-other-client")))["sub"] == "alice"
    await v.close()
    # A static key may still go without an audience.
    static = await validator(key=SECRET, algorithms="HS256")
    token = jwt.encode({"sub": "bob", "aud": "x", "exp": int(time.time()) + 60}, SECRET)
    assert (await static.validate(token))["sub"] == "bob"


async def test_https_and_loopback_http_urls_are_accepted() -> None:
    for url in ("https://idp.example.com/jwks", "http://127.0.0.1:1/jwks", "http://[::1]:1/j"):
        v = await validator(jwksURL=url, algorithms="RS256", audience="orders")
        await v.close()


async def test_a_redirected_jwks_fetch_fails_naming_the_url(
    idp: JWKSServer, detour: str, caplog: pytest.LogCaptureFixture
) -> None:
    v = await validator(jwksURL=f"{detour}/moved", algorithms="RS256", audience="orders")
    assert (await refused(v, idp.token())).code == "ERR_AUTH_KEYS_UNAVAILABLE"
    assert idp.jwks_fetches == 0  # the redirect was not followed
    assert f"{detour}/moved answered HTTP 302" in caplog.text
    await v.close()


async def test_a_discovered_plain_http_jwks_uri_is_refused(
    idp: JWKSServer, detour: str, caplog: pytest.LogCaptureFixture
) -> None:
    v = await validator(issuer=detour, algorithms="RS256", audience="orders")
    assert (await refused(v, idp.token())).code == "ERR_AUTH_KEYS_UNAVAILABLE"
    assert "http://idp.example.com/jwks" in caplog.text and "https://" in caplog.text
    await v.close()


async def test_claims_with_nan_or_infinity_are_refused(idp: JWKSServer) -> None:
    v = await jwks_validator(idp)
    for value in (float("nan"), float("inf")):
        token = idp.key("RS256").sign(idp.claims(score=value))
        assert (await refused(v, token)).code == "ERR_AUTH_TOKEN_INVALID"
    await v.close()
