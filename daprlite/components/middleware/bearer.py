"""``middleware.http.bearer``: only requests with a valid bearer token go on.

A Configuration names it in ``spec.appHttpPipeline`` (requests delivered to
the app) or ``spec.httpPipeline`` (requests to the Dapr API); the pipeline
(``blocks/middleware.py``) calls :meth:`BearerMiddleware.handle` before the
request goes on. The token comes from ``Authorization: Bearer <token>`` and is
checked by an ``auth.jwt`` validator: the component named by
``authComponent`` (bound after start-up through :meth:`BearerMiddleware.bind`),
or one built from the same metadata as ``auth.jwt`` (Dapr's bearer names
``issuer``, ``audience``, ``jwksURL``, plus ``algorithms``, ``key`` ...). As
for ``auth.jwt``, an inline ``issuer`` or ``jwksURL`` needs an ``audience``
unless ``allowAnyAudience`` is ``"true"``.

A refusal is 401 with the ``ERR_AUTH_*`` code of the reason and a
``WWW-Authenticate: Bearer`` header (503 ``ERR_AUTH_KEYS_UNAVAILABLE`` when the
identity provider's keys cannot be fetched). An accepted request goes on with
its claims in the ``x-daprlite-claims`` header: the claims as compact JSON,
base64url-encoded without padding (RFC 4648 section 5). Any
``x-daprlite-claims`` header the caller sent is removed first, so the app can
trust the one it gets. The ``Authorization`` header itself is passed on.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from daprlite.components.auth.api import AuthError, TokenValidator, is_token_validator
from daprlite.components.auth.jwt import HMAC_ALGORITHMS, KNOWN_ALGORITHMS, JWTValidator
from daprlite.components.errors import ComponentError, MetadataError
from daprlite.components.metadata import ComponentMetadata, decode, setting
from daprlite.components.middleware.api import MiddlewareRejection, MiddlewareRequest

_log = logging.getLogger("daprlite.component.middleware")

CLAIMS_HEADER = "x-daprlite-claims"
MISSING = "ERR_AUTH_TOKEN_MISSING"
KEYS_UNAVAILABLE = "ERR_AUTH_KEYS_UNAVAILABLE"
# Without an explicit allow-list an inline (OIDC) validator accepts the asymmetric
# algorithms only: a shared secret never comes from an identity provider's JWKS.
DEFAULT_ALGORITHMS = ",".join(sorted(KNOWN_ALGORITHMS - HMAC_ALGORITHMS))
_OWN_KEYS = frozenset({"authcomponent"})


@dataclass(frozen=True, slots=True)
class BearerSettings:
    """Component metadata of ``middleware.http.bearer``; the rest goes to the inline validator."""

    authComponent: str = setting("", doc="Name of the auth.jwt component that checks tokens.")
    issuer: str = setting("", doc="Without authComponent: the issuer (OIDC discovery).")
    jwksURL: str = setting("", doc="Without authComponent: the JWKS URL.")
    key: str = setting("", doc="Without authComponent: a shared secret or PEM public key.")


def encode_claims(claims: dict[str, object]) -> str:
    raw = json.dumps(claims, separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_claims(value: str) -> dict[str, object]:
    """What an app does with ``x-daprlite-claims`` (used by the tests)."""
    padded = value + "=" * (-len(value) % 4)
    doc = json.loads(base64.urlsafe_b64decode(padded))
    assert isinstance(doc, dict)
    return doc


def _challenge(error: str = "") -> tuple[tuple[str, str], ...]:
    value = 'Bearer realm="daprlite"' + (f', error="{error}"' if error else "")
    return (("www-authenticate", value),)


class BearerMiddleware:
    """An :class:`HttpMiddleware` that lets only requests with a valid JWT through."""

    def __init__(self) -> None:
        self._name = ""
        self._component = ""
        self._validator: TokenValidator | None = None
        self._own: JWTValidator | None = None

    async def init(self, metadata: ComponentMetadata) -> None:
        settings = decode(BearerSettings, metadata.properties)
        self._name = metadata.name
        if settings.authComponent:
            self._component = settings.authComponent
            return
        if not (settings.issuer or settings.jwksURL or settings.key):
            raise MetadataError(
                "authComponent", "name an auth.jwt component, or give issuer, jwksURL or key"
            )
        props = {k: v for k, v in metadata.properties.items() if k.lower() not in _OWN_KEYS}
        if not any(k.lower() == "algorithms" for k in props) and not settings.key:
            props["algorithms"] = DEFAULT_ALGORITHMS
        own = JWTValidator()
        await own.init(replace(metadata, properties=props))
        self._own = self._validator = own

    def bind(self, lookup: Callable[[str], object | None]) -> None:
        """Called by the pipeline once every component is loaded."""
        if not self._component:
            return
        found = lookup(self._component)
        if not is_token_validator(found):
            raise ComponentError(
                f"metadata field 'authComponent': no auth.jwt component named "
                f"{self._component!r} is loaded"
            )
        assert isinstance(found, TokenValidator)
        self._validator = found

    async def handle(self, request: MiddlewareRequest) -> MiddlewareRequest:
        # A caller never gets to speak for the validator: its own claims header goes.
        headers = tuple((k, v) for k, v in request.headers if k.lower() != CLAIMS_HEADER)
        given = next((v for k, v in headers if k.lower() == "authorization"), "")
        scheme, _, token = given.strip().partition(" ")
        token = token.strip()
        if not given:
            raise MiddlewareRejection(
                401, MISSING, "the request has no 'Authorization: Bearer' token", _challenge()
            )
        if scheme.lower() != "bearer" or not token:
            raise MiddlewareRejection(
                401,
                MISSING,
                "the Authorization header is not 'Bearer <token>'",
                _challenge("invalid_request"),
            )
        if self._validator is None:
            raise MiddlewareRejection(
                503, KEYS_UNAVAILABLE, f"middleware {self._name} has no validator bound"
            )
        try:
            claims = await self._validator.validate(token)
        except AuthError as exc:
            _log.debug("bearer %s: request refused: %s", self._name, exc.code)
            if exc.code == KEYS_UNAVAILABLE:
                raise MiddlewareRejection(503, exc.code, exc.message) from None
            raise MiddlewareRejection(
                401, exc.code, exc.message, _challenge("invalid_token")
            ) from None
        return replace(request, headers=(*headers, (CLAIMS_HEADER, encode_claims(claims))))

    async def close(self) -> None:
        if self._own is not None:
            await self._own.close()
            self._own = None
