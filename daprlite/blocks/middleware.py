"""The HTTP middleware pipelines: ``spec.httpPipeline`` and ``spec.appHttpPipeline``.

A :class:`Pipeline` runs the middleware components a Configuration names, in
order, on one request. Two places in the request path call it: the HTTP API
transport, before any route (``transport/http/middleware.py``, for
``httpPipeline``), and the HTTP app channel, on every call the sidecar makes
to its own HTTP app (``channel/http.py`` and ``channel/h2c.py``, for
``appHttpPipeline``): invocations, pub/sub deliveries, input-binding events,
``GET /dapr/subscribe`` and the bindings' ``OPTIONS`` probe, but not the app
health probes. It lives in ``blocks/`` rather than ``runtime/`` because it runs
at request time and its callers may only depend on blocks; the runtime just
builds it once the components are loaded (:func:`configure_pipelines`, called
from ``runtime/sidecar.py``).

Middleware components are loaded by the component processor like any other
(category ``middleware.http``); this module only looks them up by name, checks
their type against the handler entry, and calls their optional
``bind(lookup)`` once every component is loaded, so a middleware can find
another component (the bearer middleware its ``auth.jwt`` validator) whatever
the load order. A handler that names a missing component, or one of another
type, stops start-up with a :class:`PipelineError` naming the Configuration
field. A handler's ``selector`` is parsed but not applied: Dapr's
Configuration schema has the field, but neither its runtime nor its
documentation gives it a meaning, so there are no semantics to follow.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from daprlite.blocks.auth import loggable_path
from daprlite.blocks.invoke.model import Caller
from daprlite.components.middleware.api import (
    HttpMiddleware,
    MiddlewareRejection,
    MiddlewareRequest,
    PipelineSpec,
)
from daprlite.config.configuration import Configuration
from daprlite.runtime.registry import ComponentStore

log = logging.getLogger("daprlite.middleware")

CATEGORY = "middleware.http"
API_FIELD = "spec.httpPipeline"
APP_FIELD = "spec.appHttpPipeline"
_FRAMING = frozenset({"content-type", "content-length", "transfer-encoding"})


class PipelineError(Exception):
    """A pipeline handler cannot be set up; the message names the Configuration field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"Configuration field {field!r}: {problem}")
        self.field = field


def rejection_body(exc: MiddlewareRejection) -> bytes:
    """The catalogue-style body a refused caller receives."""
    return json.dumps({"errorCode": exc.error_code, "message": exc.message}).encode()


def rejection_headers(exc: MiddlewareRejection) -> tuple[tuple[str, str], ...]:
    """The refusal's own headers (``Retry-After``, ``WWW-Authenticate``), not body framing."""
    return tuple((k, v) for k, v in exc.headers if k.lower() not in _FRAMING)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A handler refused a call to the app: the answer that stands in for the app's.

    The app channel hands it back exactly as it would the app's own answer, so
    each caller treats it as the app answering ``status``: an invocation's
    caller receives it; a pub/sub delivery is retried or redelivered; an
    input-binding event is the app's error.
    """

    status: int
    headers: tuple[tuple[str, str], ...]  # the refusal's own, e.g. Retry-After
    body: bytes  # {errorCode, message}
    content_type: str = "application/json"


def invocation_client(caller: Caller, peer: str = "") -> str:
    """The client a handler keys on (ratelimit's buckets) for an invocation.

    The caller's app id when its certificate proves it; otherwise the caller's
    address, since an unverified app id is whatever the caller chose to claim.
    """
    if not caller.verified and peer:
        return peer
    return f"{caller.app_id}.{caller.namespace or 'default'}"


class Pipeline:
    """The handlers of one pipeline, in Configuration order. Empty until configured."""

    def __init__(self, field: str) -> None:
        self.field = field  # e.g. "spec.appHttpPipeline", for errors and logs
        self._handlers: tuple[tuple[str, HttpMiddleware], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._handlers)

    @property
    def empty(self) -> bool:
        return not self._handlers

    def configure(self, specs: Sequence[PipelineSpec], components: ComponentStore) -> None:
        """Resolve every handler to its loaded component; PipelineError if one cannot be."""
        handlers: list[tuple[str, HttpMiddleware]] = []
        for i, spec in enumerate(specs):
            where = f"{self.field}.handlers[{i}]"
            live = components.get(CATEGORY, spec.name)
            if live is None:
                loaded = sorted(c.name for c in components.of_category(CATEGORY))
                known = f"; loaded middleware: {', '.join(loaded)}" if loaded else ""
                raise PipelineError(
                    f"{where}.name",
                    f"no middleware component named {spec.name!r} is loaded{known}",
                )
            if live.type != spec.type:
                raise PipelineError(
                    f"{where}.type",
                    f"component {spec.name!r} is of type {live.type!r}, not {spec.type!r}",
                )
            if not isinstance(live.instance, HttpMiddleware):
                raise PipelineError(
                    f"{where}.type", f"component {spec.name!r} is not an HTTP middleware"
                )
            if spec.selector:
                log.warning(
                    "%s: selector of %s is not applied; it runs on every request",
                    where,
                    spec.name,
                )
            handlers.append((spec.name, live.instance))
        self._handlers = tuple(handlers)
        if handlers:
            log.info("%s: %s", self.field, " -> ".join(self.names))

    async def run(self, request: MiddlewareRequest) -> MiddlewareRequest:
        """The request as the last handler passed it on; raises MiddlewareRejection to refuse.

        A middleware that fails in any other way refuses the request (500): a
        broken guard must not let the call through.
        """
        for name, middleware in self._handlers:
            try:
                out = await middleware.handle(request)
            except MiddlewareRejection:
                raise
            except Exception as exc:
                # The path may hold a session id (a credential): masked, like the API log.
                log.exception(
                    "middleware %s failed on %s %s",
                    name,
                    request.verb,
                    loggable_path(request.path),
                )
                raise MiddlewareRejection(
                    500, "ERROR", f"middleware {name!r} failed; see the sidecar log"
                ) from exc
            if not isinstance(out, MiddlewareRequest):
                log.error("middleware %s returned %s, not a request", name, type(out).__name__)
                raise MiddlewareRejection(
                    500, "ERROR", f"middleware {name!r} failed; see the sidecar log"
                )
            request = replace(out, headers=tuple((k.lower(), v) for k, v in out.headers))
        return request

    async def screen(self, request: MiddlewareRequest) -> MiddlewareRequest | Refusal:
        """Like :meth:`run`, but a refusal comes back as a :class:`Refusal` rather than raised."""
        try:
            return await self.run(request)
        except MiddlewareRejection as exc:
            return Refusal(exc.status, rejection_headers(exc), rejection_body(exc))


def _lookup(components: ComponentStore) -> Callable[[str], object | None]:
    def lookup(name: str) -> object | None:
        # Names are unique per category; an auth component is the usual target.
        live = components.get("auth", name) or next((c for c in components if c.name == name), None)
        return None if live is None else live.instance

    return lookup


async def configure_pipelines(
    configuration: Configuration,
    components: ComponentStore,
    api: Pipeline,
    app: Pipeline,
) -> None:
    """Start-up, once every component is loaded: build both pipelines, then bind their middleware.

    Each middleware used by either pipeline is bound once, with a lookup of
    every loaded component by name.
    """
    api.configure(configuration.http_pipeline, components)
    app.configure(configuration.app_http_pipeline, components)
    lookup = _lookup(components)
    bound: set[str] = set()
    uses = [(API_FIELD, i, s) for i, s in enumerate(configuration.http_pipeline)]
    uses += [(APP_FIELD, i, s) for i, s in enumerate(configuration.app_http_pipeline)]
    for field, i, spec in uses:
        live = components.get(CATEGORY, spec.name)
        bind = getattr(live.instance, "bind", None) if live is not None else None
        if bind is None or spec.name in bound:
            continue
        bound.add(spec.name)
        try:
            result = bind(lookup)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            raise PipelineError(
                f"{field}.handlers[{i}].name", f"middleware {spec.name!r} cannot start: {exc}"
            ) from exc
