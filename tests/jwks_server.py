"""A small identity provider for the auth tests: real keys, a JWKS and OIDC discovery.

:class:`JWKSServer` holds real RSA, EC (P-256) and Ed25519 key pairs made with
``cryptography``, signs tokens with them, and serves over aiohttp:

- ``GET /.well-known/openid-configuration`` -> ``{"issuer", "jwks_uri"}``;
- ``GET /jwks`` -> the public keys as a JWKS.

It counts both kinds of fetch (``jwks_fetches``, ``discovery_fetches``) so a
test can prove the validator's cache and rate limit, and :meth:`rotate`
replaces the published keys mid-test. It runs in the test's own event loop
(:meth:`start` / :meth:`stop`, for unit tests) or in a background thread
(:meth:`start_in_thread` / :meth:`stop_thread`, for a sidecar process to call).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from dataclasses import dataclass

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

    def public_jwk(self) -> dict[str, object]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, claims: dict[str, object], **header: object) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **header}
        )


def new_key(alg: str = "RS256") -> SigningKey:
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if alg.startswith(("RS", "PS")):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"no test key type for {alg}")
    return SigningKey(f"{alg.lower()}-{uuid.uuid4().hex[:8]}", alg, private)


class JWKSServer:
    """An OIDC-style key server on a free port of 127.0.0.1."""

    def __init__(self, algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")) -> None:
        self.keys: list[SigningKey] = [new_key(a) for a in algorithms]
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- keys and tokens ------------------------------------------------------------------
    def key(self, alg: str) -> SigningKey:
        return next(k for k in self.keys if k.alg == alg)

    def rotate(self, alg: str = "RS256") -> tuple[SigningKey, SigningKey]:
        """Replace the published ``alg`` key with a new one; ``(old, new)``."""
        old = self.key(alg)
        new = new_key(alg)
        self.keys = [new if k is old else k for k in self.keys]
        return old, new

    def claims(self, **extra: object) -> dict[str, object]:
        now = int(time.time())
        return {
            "iss": self.url,
            "sub": "alice",
            "aud": "orders",
            "iat": now,
            "exp": now + 300,
            **extra,
        }

    def token(self, alg: str = "RS256", **extra: object) -> str:
        return self.key(alg).sign(self.claims(**extra))

    # -- HTTP ------------------------------------------------------------------------------
    async def _discovery(self, request: web.Request) -> web.Response:
        self.discovery_fetches += 1
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/jwks"})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response({"keys": [k.public_jwk() for k in self.keys]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        return app

    async def start(self) -> str:
        """Serve in the running event loop; the base URL (also the issuer)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start_in_thread(self) -> str:
        """Serve from a background thread with its own loop (for sidecar processes)."""
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the JWKS server did not start")
        return self.url

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None
            self._thread = None
