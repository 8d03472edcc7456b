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

Keys are fetched over ``https://`` only (``http://`` to a loopback address,
for local testing), and a redirect is a failed fetch. With ``jwksURL`` or
``issuer`` an ``audience`` is required, since an identity provider signs
tokens for all of its clients; ``allowAnyAudience: "true"`` waives that
explicitly. With a static ``key`` it stays optional.

Only the algorithms listed in ``algorithms`` are accepted; ``none`` never is.
The key decides the algorithm family, never the token: an HMAC algorithm is
accepted only with a shared secret, so a public key cannot be replayed as an
HMAC secret. Time claims are checked with ``leeway`` (default 60s) for clock
skew, ``exp`` is required unless ``requireExpiry`` is false. Every refusal is
an :class:`AuthError` with an ``ERR_AUTH_*`` code; neither the token nor the
key ever appears in a message or a log line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import aiohttp
import jwt

from daprlite.components.auth._keys import (
    HMAC_ALGORITHMS,
    KNOWN_ALGORITHMS,
    JWKSCache,
    VerifyKey,
    fetch_url_problem,
    key_fits,
    load_public_key,
)
from daprlite.components.auth.api import AuthError
from daprlite.components.errors import MetadataError
from daprlite.components.metadata import ComponentMetadata, Duration, decode, setting

_log = logging.getLogger("daprlite.component.auth")

_CANONICAL = {a.lower(): a for a in KNOWN_ALGORITHMS}

# A JWT bigger than this is refused before any parsing (headers rarely exceed 8 KiB).
MAX_TOKEN_BYTES = 16 * 1024

# Error codes (catalogue entries in daprlite/errors.py).
INVALID = "ERR_AUTH_TOKEN_INVALID"
EXPIRED = "ERR_AUTH_TOKEN_EXPIRED"
NOT_YET_VALID = "ERR_AUTH_TOKEN_NOT_YET_VALID"
AUDIENCE = "ERR_AUTH_AUDIENCE"
ISSUER = "ERR_AUTH_ISSUER"
CLAIMS = "ERR_AUTH_CLAIMS"


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
    audience: str = setting(
        "",
        doc="Comma-separated; the token's 'aud' must hold one of them. Required with jwksURL "
        "or issuer unless allowAnyAudience is true.",
    )
    allowAnyAudience: bool = setting(
        False, doc="Accept tokens for any audience from a jwksURL/issuer (explicit opt-out)."
    )
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
            self._check_identity_provider(s)
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

    def _check_identity_provider(self, s: JWTSettings) -> None:
        if not self._audience and not s.allowAnyAudience:
            raise MetadataError(
                "audience",
                "is required with jwksURL or issuer: the identity provider signs tokens for "
                'every client it serves; set allowAnyAudience: "true" to accept them all',
            )
        field_name, url = ("jwksURL", s.jwksURL) if s.jwksURL else ("issuer", s.issuer)
        problem = fetch_url_problem(url)
        if problem is not None:
            raise MetadataError(field_name, problem)

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
        except RecursionError:
            raise AuthError(INVALID, "the token's claims nest too deeply") from None
        try:
            # Claims go on as JSON (replies, sessions, x-daprlite-claims): strict JSON only.
            json.dumps(claims, allow_nan=False)
        except (ValueError, RecursionError):
            raise AuthError(
                INVALID, "the token's claims hold NaN, Infinity or deep nesting"
            ) from None
        for name, expected in self._required:
            if expected is not None and not _claim_matches(claims.get(name), expected):
                raise AuthError(CLAIMS, f"claim {name!r} does not have the required value")
        return claims
