"""``auth.jwt``: validate a bearer token (JWT) and return its claims.

The auth block (``blocks/auth.py``, behind ``POST /v1.0-alpha1/auth/{name}/validate``
and the gRPC ``Auth`` service), ``auth.sessions`` (creating a session from a
token) and the ``middleware.http.bearer`` component call :meth:`JWTValidator.validate`
through the :class:`~daprlite.components.auth.api.TokenValidator` contract.

Keys come from one place, in this order:

1. ``key``: a shared secret (HS256/384/512) or a PEM public key or certificate
   (RS*, PS*, ES*, EdDSA), possibly through ``secretKeyRef``;
2. ``jwksURL``: a JSON Web Key Set, cached for ``jwksCacheTTL`` and fetched
   again when a token names an unknown ``kid`` (at most once per
   ``jwksMinRefreshInterval``, so a flood of forged kids cannot hammer the
   identity provider);
3. ``issuer`` alone: OIDC discovery, ``<issuer>/.well-known/openid-configuration``
   gives the ``jwks_uri``.

Only the algorithms listed in ``algorithms`` are accepted; ``none`` never is.
The key decides the algorithm family, never the token: an HMAC algorithm is
accepted only with a shared secret, so a public key cannot be replayed as an
HMAC secret. Time claims are checked with ``leeway`` (default 60s) for clock
skew, ``exp`` is required unless ``requireExpiry`` is false. Every refusal is
an :class:`AuthError` with an ``ERR_AUTH_*`` code; neither the token nor the
key ever appears in a message or a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from daprlite.components.auth.api import AuthError
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting

_log = logging.getLogger("daprlite.component.auth")

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
EDDSA = "EdDSA"
KNOWN_ALGORITHMS = HMAC_ALGORITHMS | RSA_ALGORITHMS | frozenset(EC_CURVES) | {EDDSA}
_CANONICAL = {a.lower(): a for a in KNOWN_ALGORITHMS}

# A JWT bigger than this is refused before any parsing (headers rarely exceed 8 KiB).
MAX_TOKEN_BYTES = 16 * 1024
# A JWKS or discovery document bigger than this is refused.
MAX_DOCUMENT_BYTES = 1024 * 1024

# Error codes (catalogue entries in daprlite/errors.py).
INVALID = "ERR_AUTH_TOKEN_INVALID"
EXPIRED = "ERR_AUTH_TOKEN_EXPIRED"
NOT_YET_VALID = "ERR_AUTH_TOKEN_NOT_YET_VALID"
AUDIENCE = "ERR_AUTH_AUDIENCE"
ISSUER = "ERR_AUTH_ISSUER"
CLAIMS = "ERR_AUTH_CLAIMS"
KEY_NOT_FOUND = "ERR_AUTH_KEY_NOT_FOUND"
KEYS_UNAVAILABLE = "ERR_AUTH_KEYS_UNAVAILABLE"

PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
)
VerifyKey = PublicKey | bytes


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True, repr=False)
class JWTSettings:
    """Component metadata of ``auth.jwt`` (names are case-insensitive)."""

    algorithms: str = setting(
        required=True,
        doc="Comma-separated allow-list, e.g. 'RS256,ES256'. Known: HS256/384/512, "
        "RS256/384/512, PS256/384/512, ES256/384/512, EdDSA. 'none' is never accepted.",
    )
    key: str = setting(
        "",
        doc="A shared secret (HS*) or a PEM public key / certificate; use secretKeyRef. "
        "When set, jwksURL and discovery are not used.",
    )
    jwksURL: str = setting("", doc="URL of the JSON Web Key Set.")
    issuer: str = setting(
        "",
        doc="Required 'iss'. Without key and jwksURL, also the OIDC discovery base URL.",
    )
    audience: str = setting("", doc="Comma-separated; the token's 'aud' must hold one of them.")
    requiredClaims: str = setting(
        "",
        doc="Comma-separated claim names that must be present; 'name=value' also pins the "
        "value (for a list claim such as roles, one element must equal it).",
    )
    leeway: Duration = setting(Duration(60), doc="Clock skew allowed for exp, nbf and iat.")
    requireExpiry: bool = setting(True, doc="Refuse tokens without an 'exp' claim.")
    jwksCacheTTL: Duration = setting(Duration(600), doc="How long a fetched JWKS is trusted.")
    jwksMinRefreshInterval: Duration = setting(
        Duration(30), doc="Least time between two JWKS fetches triggered by an unknown kid."
    )
    jwksFetchTimeout: Duration = setting(
        Duration(5), doc="Timeout of one JWKS or discovery request."
    )

    def __repr__(self) -> str:  # the key may be a secret: never in a repr
        return (
            f"JWTSettings(algorithms={self.algorithms!r}, key={'***' if self.key else ''!r}, "
            f"jwksURL={self.jwksURL!r}, issuer={self.issuer!r}, audience={self.audience!r})"
        )

    def allowed_algorithms(self) -> frozenset[str]:
        out = set()
        for name in _split(self.algorithms):
            if name.lower() == "none":
                raise MetadataError("algorithms", "'none' is never accepted")
            canonical = _CANONICAL.get(name.lower())
            if canonical is None:
                raise MetadataError(
                    "algorithms",
                    f"unknown algorithm {name!r}; expected some of "
                    f"{', '.join(sorted(KNOWN_ALGORITHMS))}",
                )
            out.add(canonical)
        if not out:
            raise MetadataError("algorithms", "is required, e.g. 'RS256'")
        return frozenset(out)

    def required(self) -> tuple[tuple[str, str | None], ...]:
        """``(name, pinned value or None)`` for each entry of ``requiredClaims``."""
        out = []
        for entry in _split(self.requiredClaims):
            name, sep, value = entry.partition("=")
            if not name.strip():
                raise MetadataError("requiredClaims", f"entry {entry!r} has no claim name")
            out.append((name.strip(), value.strip() if sep else None))
        return tuple(out)


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
        self._jwks_url = doc["jwks_uri"]
        return self._jwks_url

    async def _get_json(self, url: str) -> object:
        async with self._session.get(url, headers={"Accept": "application/json"}) as resp:
            if resp.status != 200:
                raise ValueError(f"GET {url} answered HTTP {resp.status}")
            body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError(f"GET {url}: the document is larger than {MAX_DOCUMENT_BYTES}")
        return json.loads(body)


def _claim_matches(actual: object, expected: str) -> bool:
    if isinstance(actual, list):
        return any(_claim_matches(item, expected) for item in actual)
    if isinstance(actual, str):
        return actual == expected
    return json.dumps(actual) == expected  # true, 42 ...


class JWTValidator:
    """``auth.jwt``: a :class:`TokenValidator` over pyjwt with static keys or a JWKS."""

    def __init__(self) -> None:
        self.settings: JWTSettings | None = None
        self._name = ""
        self._algorithms: frozenset[str] = frozenset()
        self._audience: tuple[str, ...] = ()
        self._required: tuple[tuple[str, str | None], ...] = ()
        self._static: VerifyKey | None = None
        self._session: aiohttp.ClientSession | None = None
        self.jwks: JWKSCache | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        s = decode(JWTSettings, metadata.properties)
        self._name = metadata.name
        self._algorithms = s.allowed_algorithms()
        self._audience = _split(s.audience)
        self._required = s.required()
        for field_name, value in (
            ("leeway", s.leeway),
            ("jwksCacheTTL", s.jwksCacheTTL),
            ("jwksMinRefreshInterval", s.jwksMinRefreshInterval),
        ):
            if value < 0:
                raise MetadataError(field_name, f"must not be negative, got {value:g}s")
        if s.jwksFetchTimeout <= 0:
            raise MetadataError("jwksFetchTimeout", "must be positive")
        if s.key:
            self._static = self._static_key(s.key)
        elif s.jwksURL or s.issuer:
            timeout = aiohttp.ClientTimeout(total=s.jwksFetchTimeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
            self.jwks = JWKSCache(
                metadata.name,
                self._session,
                s.jwksURL,
                s.issuer,
                s.jwksCacheTTL,
                s.jwksMinRefreshInterval,
            )
        else:
            raise MetadataError("key", "give a key, a jwksURL or an issuer (OIDC discovery)")
        self.settings = s
        source = "a static key" if s.key else (s.jwksURL or f"OIDC discovery at {s.issuer}")
        _log.info(
            "auth %s: JWT validation with %s, algorithms %s",
            self._name,
            source,
            ",".join(sorted(self._algorithms)),
        )

    def _static_key(self, text: str) -> VerifyKey:
        public = load_public_key(text)
        if public is None:
            asymmetric = sorted(self._algorithms - HMAC_ALGORITHMS)
            if asymmetric:
                raise MetadataError(
                    "algorithms",
                    f"{', '.join(asymmetric)} need a PEM public key, but key is a shared secret",
                )
            return text.encode()
        wrong = sorted(a for a in self._algorithms if not key_fits(a, public))
        if wrong:
            raise MetadataError(
                "algorithms",
                f"{', '.join(wrong)} cannot be verified with the {type(public).__name__} "
                "given as key (an HMAC algorithm never takes a public key)",
            )
        return public

    def features(self) -> frozenset[str]:
        return frozenset()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def validate(self, token: str) -> dict[str, object]:
        settings = self.settings
        if settings is None:
            raise AuthError(INVALID, f"auth {self._name} is not initialised")
        if not isinstance(token, str) or not token:
            raise AuthError(INVALID, "the token is empty")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError(INVALID, f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:  # DecodeError, a non-string kid, unknown crit ...
            raise AuthError(INVALID, f"the token's header is invalid: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthError(INVALID, "unsigned tokens (alg none) are never accepted")
        if alg not in self._algorithms:
            raise AuthError(
                INVALID,
                f"algorithm {alg!r} is not allowed; allowed: {', '.join(sorted(self._algorithms))}",
            )
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else "", alg)
        # Checked here as well as inside pyjwt: the key's family decides, never the header.
        if not key_fits(alg, key):
            raise AuthError(INVALID, f"algorithm {alg} does not fit the configured key type")
        return self._decode(token, key, alg, settings)

    async def _key(self, kid: str, alg: str) -> VerifyKey:
        if self._static is not None:
            return self._static
        assert self.jwks is not None
        if alg in HMAC_ALGORITHMS:
            raise AuthError(INVALID, f"{alg} needs a shared secret; a JWKS holds only public keys")
        return await self.jwks.key(kid, alg)

    def _decode(
        self, token: str, key: VerifyKey, alg: str, settings: JWTSettings
    ) -> dict[str, object]:
        require = [name for name, _ in self._required]
        if settings.requireExpiry:
            require.append("exp")
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(self._audience) or None,
                issuer=settings.issuer or None,
                leeway=float(settings.leeway),
                options={
                    "require": require,
                    "verify_aud": bool(self._audience),
                    "verify_iss": bool(settings.issuer),
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(EXPIRED, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(NOT_YET_VALID, "the token is not valid yet (nbf or iat)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(
                AUDIENCE, f"the token's audience is not one of {', '.join(self._audience)}"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthError(ISSUER, f"the token's issuer is not {settings.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(CLAIMS, f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise AuthError(INVALID, "the token's signature does not verify") from None
        except jwt.InvalidKeyError:
            raise AuthError(INVALID, f"algorithm {alg} does not fit the configured key") from None
        except jwt.InvalidTokenError as exc:
            # DecodeError, InvalidAlgorithmError, a malformed iat/exp ...: pyjwt's
            # messages describe the structure, never the token itself.
            raise AuthError(INVALID, f"the token is invalid: {exc}") from None
        for name, expected in self._required:
            if expected is not None and not _claim_matches(claims.get(name), expected):
                raise AuthError(CLAIMS, f"claim {name!r} does not have the required value")
        return claims
