"""The auth building block, shared by the HTTP and gRPC transports.

``transport/http/auth.py`` (``/v1.0-alpha1/auth/{name}/...``) and
``transport/grpc/auth.py`` (``daprlite.runtime.v1.Auth``) parse their wire
format and call :class:`AuthAPI`. The block finds the named ``auth.*``
component in the :class:`ComponentStore`, checks the request's fields, calls
the component through its contract (``components/auth/api.py``) and maps an
:class:`AuthError` onto the ``ERR_AUTH_*`` catalogue entry of its code. It
never logs a token or a session id.

It also connects ``auth.sessions`` components to the state block:
:meth:`AuthAPI.bind` (called by the runtime once components are loaded) hands
each one a :class:`StateBlockAccess`, the narrow view of :class:`StateAPI`
that the component contract asks for, and checks that the state store and
the validator they name are loaded.

Both transports parse their JSON input (an HTTP body, a gRPC ``claims_json``)
with :func:`json_object`, which refuses NaN, Infinity and deep nesting as bad
input, and mask session ids in logged paths with :func:`loggable_path` (also
used by the middleware pipeline, which may not import a transport).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence

from daprlite import errors
from daprlite.blocks.state import DeleteItem, SaveItem, StateAPI, TransactionItem
from daprlite.components.auth.api import (
    AuthError,
    Session,
    SessionStore,
    StateBound,
    StateWrite,
    StoredItem,
    TokenValidator,
    is_token_validator,
)
from daprlite.components.errors import ComponentError, ETagMismatchError
from daprlite.components.state.api import Concurrency, Feature
from daprlite.runtime.registry import ComponentStore, LiveComponent

log = logging.getLogger("daprlite.auth")

CATEGORY = "auth"
# Claims nest far less than this; deeper input is refused before it can exhaust the stack
# of any later json.dumps.
MAX_JSON_DEPTH = 64
_SESSION_PATH = re.compile(r"^(/v1\.0-alpha1/auth/[^/]+/sessions/)[^/]+")


def loggable_path(path: str) -> str:
    """``path`` with a session id (a bearer credential) masked, for log lines."""
    return _SESSION_PATH.sub(r"\1***", path)


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _depth(value: object) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        nested: list[object] = []
        for item in level:
            if isinstance(item, dict):
                nested.extend(item.values())
            elif isinstance(item, list):
                nested.extend(item)
        level = nested
    return depth - 1


def json_object(data: bytes | str, field: str) -> dict[str, object]:
    """``data`` as a JSON object; AUTH_BAD_REQUEST naming ``field`` when it is not one.

    NaN and Infinity are refused (they are not JSON, and no reply could carry
    them), and so is nesting deeper than :data:`MAX_JSON_DEPTH`.
    """
    try:
        doc = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise errors.AUTH_BAD_REQUEST(
            f"{field}: nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        problem = str(exc) if "is not JSON" in str(exc) else "is not valid JSON"
        raise errors.AUTH_BAD_REQUEST(f"{field}: {problem}") from None
    if not isinstance(doc, dict):
        raise errors.AUTH_BAD_REQUEST(f"{field}: must be a JSON object")
    if _depth(doc) > MAX_JSON_DEPTH:
        raise errors.AUTH_BAD_REQUEST(f"{field}: nested deeper than {MAX_JSON_DEPTH} levels")
    return doc


class AuthSetupError(Exception):
    """An auth component names a state store or validator that is not loaded."""


def _state_failure(store: str, exc: errors.APIError) -> ComponentError:
    if isinstance(exc.__cause__, ETagMismatchError) or exc.http_status == 409:
        return ETagMismatchError(f"state store {store}: {exc.message}")
    return ComponentError(f"state store {store}: {exc.message}")


def _save_item(write: StateWrite) -> SaveItem:
    assert write.value is not None
    metadata = {"ttlInSeconds": str(write.ttl_seconds)} if write.ttl_seconds else {}
    concurrency = Concurrency.FIRST_WRITE if write.insert_only else Concurrency.UNSPECIFIED
    return SaveItem(
        write.key,
        write.value,
        etag=write.etag,
        metadata=metadata,
        concurrency=concurrency.value,
        content_type="application/json",
    )


class StateBlockAccess:
    """:class:`SessionStateAccess` over the state block (key prefix, resiliency included)."""

    def __init__(self, state: StateAPI) -> None:
        self._state = state

    def _features(self, store: str) -> frozenset[Feature]:
        try:
            return self._state.features(store)
        except errors.APIError as exc:
            raise _state_failure(store, exc) from exc

    def transactional(self, store: str) -> bool:
        return Feature.TRANSACTIONAL in self._features(store)

    def expires_keys(self, store: str) -> bool:
        return Feature.TTL in self._features(store)

    async def read(self, store: str, key: str) -> StoredItem | None:
        try:
            got = await self._state.get(store, key, {})
        except errors.APIError as exc:
            raise _state_failure(store, exc) from exc
        return None if got is None else StoredItem(got.data, got.etag)

    async def write(self, store: str, writes: Sequence[StateWrite]) -> None:
        try:
            if len(writes) == 1 and writes[0].value is None:
                w = writes[0]
                await self._state.delete(store, DeleteItem(w.key, etag=w.etag))
            elif len(writes) == 1:
                await self._state.save(store, [_save_item(writes[0])])
            elif writes:
                ops = [
                    TransactionItem("delete", SaveItem(w.key, b"", etag=w.etag))
                    if w.value is None
                    else TransactionItem("upsert", _save_item(w))
                    for w in writes
                ]
                await self._state.transact(store, ops, {})
        except errors.APIError as exc:
            raise _state_failure(store, exc) from exc


def _refusal(exc: AuthError) -> errors.APIError:
    entry = errors.AUTH_ERRORS.get(exc.code, errors.AUTH_TOKEN_INVALID)
    return entry(exc.message)


class AuthAPI:
    """Transport-neutral auth operations over the sidecar's ``auth.*`` components."""

    def __init__(self, components: ComponentStore) -> None:
        self._components = components
        self._access: StateBlockAccess | None = None

    # -- wiring --------------------------------------------------------------------------------
    def bind(self, state: StateAPI) -> None:
        """Hand every state-bound auth component the state block; check what they name."""
        access = self._access = StateBlockAccess(state)
        for live in self._components.of_category(CATEGORY):
            if not isinstance(live.instance, StateBound):
                continue
            where = f"component {live.name!r} ({live.type})"
            store = live.property("stateStore")
            if self._components.get("state", store) is None:
                raise AuthSetupError(
                    f"{where}: metadata field 'stateStore': no state store named {store!r} "
                    "is loaded"
                )
            validator = live.property("validator")
            if validator and self.validator(validator) is None:
                raise AuthSetupError(
                    f"{where}: metadata field 'validator': no auth.jwt component named "
                    f"{validator!r} is loaded"
                )
            live.instance.bind(access)

    def validator(self, name: str) -> TokenValidator | None:
        """The auth.jwt component ``name``, if loaded (also the bearer middleware's lookup)."""
        live = self._components.get(CATEGORY, name)
        if live is None or not is_token_validator(live.instance):
            return None
        assert isinstance(live.instance, TokenValidator)
        return live.instance

    # -- lookups -------------------------------------------------------------------------------
    def _live(self, name: str) -> LiveComponent:
        live = self._components.get(CATEGORY, name) if name else None
        if live is None:
            raise errors.AUTH_COMPONENT_NOT_FOUND(f"auth component {name!r} is not found")
        return live

    def _token_validator(self, name: str) -> TokenValidator:
        live = self._live(name)
        if not is_token_validator(live.instance):
            raise errors.AUTH_BAD_REQUEST(
                f"auth component {name!r} is a {live.type}; validating a token needs auth.jwt"
            )
        assert isinstance(live.instance, TokenValidator)
        return live.instance

    def _sessions(self, name: str) -> tuple[LiveComponent, SessionStore]:
        live = self._live(name)
        if not isinstance(live.instance, SessionStore):
            raise errors.AUTH_BAD_REQUEST(
                f"auth component {name!r} is a {live.type}; sessions need auth.sessions"
            )
        if self._access is not None and isinstance(live.instance, StateBound):
            # Idempotent; also covers a component loaded after start-up (Kubernetes watch).
            live.instance.bind(self._access)
        return live, live.instance

    @staticmethod
    def _ttl(ttl_seconds: int | None) -> int | None:
        if ttl_seconds is None:
            return None
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds < 1:
            raise errors.AUTH_BAD_REQUEST(
                f"ttlInSeconds: must be a positive whole number of seconds, got {ttl_seconds!r}"
            )
        return ttl_seconds

    # -- tokens --------------------------------------------------------------------------------
    async def validate(self, name: str, token: str) -> dict[str, object]:
        validator = self._token_validator(name)
        if not token:
            raise errors.AUTH_BAD_REQUEST(
                "token: give it as 'Authorization: Bearer <token>' or as the 'token' field"
            )
        try:
            return await validator.validate(token)
        except AuthError as exc:
            log.debug("auth %s: token refused: %s", name, exc.code)
            raise _refusal(exc) from None

    # -- sessions ------------------------------------------------------------------------------
    async def create_session(
        self,
        name: str,
        *,
        subject: str | None = None,
        token: str | None = None,
        claims: Mapping[str, object] | None = None,
        ttl_seconds: int | None = None,
    ) -> Session:
        live, store = self._sessions(name)
        ttl = self._ttl(ttl_seconds)
        if token and subject:
            raise errors.AUTH_BAD_REQUEST("give either 'token' or 'subject', not both")
        if token:
            if claims:
                raise errors.AUTH_BAD_REQUEST(
                    "claims: a session created from a token takes the token's claims"
                )
            validator = live.property("validator")
            if not validator:
                raise errors.AUTH_BAD_REQUEST(
                    f"token: auth component {name!r} has no 'validator' (an auth.jwt "
                    "component) to check tokens with; give a 'subject' instead"
                )
            verified = await self.validate(validator, token)
            sub = verified.get("sub")
            if not isinstance(sub, str) or not sub:
                raise errors.AUTH_CLAIMS("the token has no 'sub' claim to make the session for")
            subject, claims = sub, verified
        elif not subject:
            raise errors.AUTH_BAD_REQUEST("subject: give a 'subject' or a 'token'")
        if claims is not None and not isinstance(claims, Mapping):
            raise errors.AUTH_BAD_REQUEST("claims: must be a JSON object")
        try:
            return await store.create(subject, dict(claims or {}), ttl)
        except AuthError as exc:
            raise _refusal(exc) from None
        except ComponentError as exc:
            raise errors.AUTH_SESSION_STORE(f"auth {name}: {exc}") from exc

    async def validate_session(self, name: str, session_id: str) -> Session:
        _, store = self._sessions(name)
        try:
            return await store.validate(self._session_id(session_id))
        except AuthError as exc:
            raise _refusal(exc) from None
        except ComponentError as exc:
            raise errors.AUTH_SESSION_STORE(f"auth {name}: {exc}") from exc

    async def refresh_session(
        self, name: str, session_id: str, ttl_seconds: int | None = None
    ) -> Session:
        _, store = self._sessions(name)
        ttl = self._ttl(ttl_seconds)
        try:
            return await store.refresh(self._session_id(session_id), ttl)
        except AuthError as exc:
            raise _refusal(exc) from None
        except ComponentError as exc:
            raise errors.AUTH_SESSION_STORE(f"auth {name}: {exc}") from exc

    async def revoke_session(self, name: str, session_id: str) -> None:
        _, store = self._sessions(name)
        try:
            await store.revoke(self._session_id(session_id))
        except AuthError as exc:
            raise _refusal(exc) from None
        except ComponentError as exc:
            raise errors.AUTH_SESSION_STORE(f"auth {name}: {exc}") from exc

    async def revoke_subject(self, name: str, subject: str) -> int:
        _, store = self._sessions(name)
        if not subject:
            raise errors.AUTH_BAD_REQUEST("subject: must not be empty")
        try:
            return await store.revoke_subject(subject)
        except AuthError as exc:
            raise _refusal(exc) from None
        except ComponentError as exc:
            raise errors.AUTH_SESSION_STORE(f"auth {name}: {exc}") from exc

    @staticmethod
    def _session_id(session_id: str) -> str:
        if not session_id:
            raise errors.AUTH_BAD_REQUEST("sessionId: must not be empty")
        return session_id
