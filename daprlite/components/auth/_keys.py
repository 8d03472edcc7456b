"""Signing keys for ``auth.jwt``: PEM keys, JWKS documents and the JWKS cache.

Below :mod:`daprlite.components.auth.jwt` in the request path: the validator
asks :class:`JWKSCache` for the key a token names, and checks with
:func:`key_fits` that the key's family matches the algorithm (the key picks
the family, never the token).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from daprlite.components.auth.api import AuthError
from daprlite.components.errors import MetadataError

_log = logging.getLogger("daprlite.component.auth")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
EDDSA = "EdDSA"
KNOWN_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_CURVES) | {EDDSA}
# A JWKS or discovery document bigger than this is refused.
MAX_DOCUMENT_BYTES = 1024 * 1024

KEY_NOT_FOUND = "ERR_AUTH_KEY_NOT_FOUND"
KEYS_UNAVAILABLE = "ERR_AUTH_KEYS_UNAVAILABLE"


def fetch_url_problem(url: str) -> str | None:
    """Why keys may not be fetched from ``url``, or None when they may.

    Keys decide what the sidecar trusts, so they come over ``https://`` only;
    plain ``http://`` is allowed to a loopback address (a local test IdP).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme == "https" and host:
        return None
    if parts.scheme == "http" and host:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return None
        return f"{url!r} must use https:// (http:// only to a loopback address)"
    return f"{url!r} is not an https:// URL"


PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
VerifyKey = PublicKey | bytes


def load_public_key(pem: str) -> PublicKey | None:
    """The public key of a PEM public key or certificate; None if ``pem`` is not PEM."""
    text = pem.strip()
    if not text.startswith("-----BEGIN"):
        return None
    data = text.encode()
    key: object
    try:
        if "CERTIFICATE" in text.splitlines()[0]:
            key = x509.load_pem_x509_certificate(data).public_key()
        elif "PRIVATE KEY" in text.splitlines()[0]:
            raise MetadataError(
                "key", "holds a private key; give the public key (or certificate) instead"
            )
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise MetadataError("key", "is PEM but not a readable public key or certificate") from exc
    if not isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise MetadataError("key", f"{type(key).__name__} keys cannot sign JWTs")
    return key


def key_fits(alg: str, key: VerifyKey) -> bool:
    """Whether ``key`` may verify ``alg``: the key picks the family, never the token."""
    if alg in HMAC_ALGORITHMS:
        return isinstance(key, bytes)
    if alg in RSA_ALGORITHMS:
        return isinstance(key, rsa.RSAPublicKey)
    if alg in EC_CURVES:
        return isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == EC_CURVES[alg]
    if alg == EDDSA:
        return isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def _as_public(key: object) -> PublicKey | None:
    """A JWK may carry private parts; only its public half is ever used."""
    public_key = getattr(key, "public_key", None)
    if callable(public_key) and not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        key = public_key()
    if isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        return key
    return None


@dataclass(frozen=True, slots=True)
class JWK:
    kid: str
    alg: str  # the JWK's own "alg", "" when it does not pin one
    key: PublicKey


def parse_jwks(document: object, component: str) -> tuple[JWK, ...]:
    """The usable signing keys of a JWKS document; unusable entries are skipped and logged."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS: expected an object with a 'keys' array")
    out = []
    for i, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            continue
        kid = str(entry["kid"]) if isinstance(entry.get("kid"), str) else ""
        if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
            # Encryption keys are not for us; a symmetric key has no place in a public set.
            continue
        try:
            parsed = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
            _log.warning("auth %s: JWKS key %d (kid %r) skipped: %s", component, i, kid, exc)
            continue
        public = _as_public(parsed.key)
        if public is None:
            continue
        alg = str(entry["alg"]) if isinstance(entry.get("alg"), str) else ""
        out.append(JWK(kid, alg, public))
    return tuple(out)


class JWKSCache:
    """The keys of one JWKS URL (or one issuer's discovered URL), fetched on demand.

    A fetch replaces the whole set, so a key the identity provider removed stops
    working at the next fetch. Fetches are serialised by a lock; one triggered by
    an unknown ``kid`` happens at most once per ``min_refresh`` seconds.
    """

    def __init__(
        self,
        component: str,
        session: aiohttp.ClientSession,
        jwks_url: str,
        issuer: str,
        ttl: float,
        min_refresh: float,
    ) -> None:
        self._component = component
        self._session = session
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._keys: tuple[JWK, ...] = ()
        self._fetched_at = -1.0  # monotonic time of the last successful fetch
        self._attempted_at = -1.0  # ... and of the last attempt, successful or not
        self._lock = asyncio.Lock()
        self.fetches = 0  # JWKS documents requested, for the metadata and the tests

    def _find(self, kid: str, alg: str) -> JWK | None:
        fitting = [k for k in self._keys if key_fits(alg, k.key) and k.alg in ("", alg)]
        if kid:
            return next((k for k in fitting if k.kid == kid), None)
        # No kid: only unambiguous when exactly one key fits the algorithm.
        return fitting[0] if len(fitting) == 1 else None

    async def key(self, kid: str, alg: str) -> PublicKey:
        now = time.monotonic()
        stale = self._fetched_at < 0 or now - self._fetched_at > self._ttl
        if stale:
            await self._refresh()
        found = self._find(kid, alg)
        if found is None and not stale:
            await self._refresh()
            found = self._find(kid, alg)
        if found is not None:
            return found.key
        if not self._keys and self._fetched_at < 0:
            raise AuthError(
                KEYS_UNAVAILABLE, f"auth {self._component}: the signing keys cannot be fetched"
            )
        what = f"key id {kid!r}" if kid else f"a single {alg} key (the token names no kid)"
        raise AuthError(KEY_NOT_FOUND, f"no signing key matches {what} with algorithm {alg}")

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._attempted_at >= 0 and now - self._attempted_at < self._min_refresh:
                # Rate-limited (failed fetches too: an identity provider that is down
                # is not asked again by every request), or another waiter just fetched.
                return
            self._attempted_at = now
            try:
                url = self._jwks_url or await self._discover()
                self.fetches += 1
                keys = parse_jwks(await self._get_json(url), self._component)
            except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
                _log.warning("auth %s: fetching the JWKS failed: %s", self._component, exc)
                return  # keep serving the keys we have, if any
            self._keys = keys
            self._fetched_at = time.monotonic()
            _log.info("auth %s: JWKS fetched, %d signing keys", self._component, len(keys))

    async def _discover(self) -> str:
        base = self._issuer.rstrip("/")
        doc = await self._get_json(f"{base}/.well-known/openid-configuration")
        if not isinstance(doc, dict) or not isinstance(doc.get("jwks_uri"), str):
            raise ValueError("the OpenID configuration has no 'jwks_uri'")
        # OIDC Discovery: the document must name the issuer it was fetched for.
        if str(doc.get("issuer", "")).rstrip("/") != base:
            raise ValueError(
                f"the OpenID configuration names issuer {doc.get('issuer')!r}, "
                f"expected {self._issuer!r}"
            )
        problem = fetch_url_problem(doc["jwks_uri"])
        if problem is not None:
            raise ValueError(f"the OpenID configuration's jwks_uri: {problem}")
        self._jwks_url = doc["jwks_uri"]
        return self._jwks_url

    async def _get_json(self, url: str) -> object:
        # No redirects: a 3xx could lead to another host or to plain http.
        headers = {"Accept": "application/json"}
        async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                raise ValueError(f"GET {url} answered HTTP {resp.status}")
            body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"GET {url}: the document is larger than {MAX_DOCUMENT_BYTES}")
        return json.loads(body)
