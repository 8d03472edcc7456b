"""Who is asking the sentry for a certificate: TokenReview, then the pod's app id.

Called by ``POST /v1/sign`` (:mod:`daprlite.sentry.server`) before any CSR is
signed. The sidecar's projected service-account token (audience
:data:`AUDIENCE`) is sent to the API server's TokenReview; an authenticated
review names the service account and — for a token bound to a pod, which
every projected token is — the pod. That pod is then read: it must run as that
service account, ask for a sidecar (``daprlite.io/enabled`` or
``dapr.io/enabled`` true), and its ``daprlite.io/app-id`` annotation
(``dapr.io/app-id`` accepted; without either, the id the injector derives from
the pod's owner) must be a valid app id (the injector's rule) and the one asked
for. A token of another namespace or a pod of another app gets
:class:`Forbidden`; a token the API server does not accept gets
:class:`Unauthenticated`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from kubernetes_asyncio.client import (
    ApiClient,
    AuthenticationV1Api,
    CoreV1Api,
    V1TokenReview,
    V1TokenReviewSpec,
)
from kubernetes_asyncio.client.exceptions import ApiException

from daprlite.injector.annotations import (
    DAPR_PREFIX,
    PREFIX,
    InjectionError,
    annotations_of,
    default_app_id,
    is_enabled,
    is_valid_app_id,
)
from daprlite.kubernetes.client import api_error_text

log = logging.getLogger("daprlite.sentry")

AUDIENCE = "daprlite-sentry"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
_SA_PREFIX = "system:serviceaccount:"
_TIMEOUT = 10.0


class CallerCheckError(Exception):
    """The caller could not be checked or did not pass."""


class Unauthenticated(CallerCheckError):
    """The API server did not authenticate the token (expired, forged, wrong audience)."""


class Forbidden(CallerCheckError):
    """The token is valid but does not prove the namespace and app id asked for."""


class APIUnavailable(CallerCheckError):
    """The API server could not be asked (unreachable, or it refused the sentry)."""


@dataclass(frozen=True, slots=True)
class VerifiedCaller:
    namespace: str
    service_account: str
    pod_name: str
    app_id: str


async def _json(call: object, what: str) -> tuple[int, dict[str, object]]:
    """Await a ``_preload_content=False`` API call: (status, JSON body)."""
    try:
        response = await call  # type: ignore[misc]
        try:
            status = int(response.status)
            body = json.loads(await response.read())
        finally:
            response.release()
    except ApiException as exc:
        raise APIUnavailable(f"{what}: {api_error_text(exc)}") from None
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        raise APIUnavailable(f"{what}: {type(exc).__name__}: {exc}") from None
    return status, body if isinstance(body, dict) else {}


def _status_message(body: Mapping[str, object]) -> str:
    message = body.get("message")
    return message if isinstance(message, str) else "no message"


async def review_token(
    client: ApiClient, token: str, audience: str = AUDIENCE
) -> dict[str, object]:
    """``status`` of a TokenReview of ``token`` for ``audience``; raises unless accepted."""
    review = V1TokenReview(
        api_version="authentication.k8s.io/v1",
        kind="TokenReview",
        spec=V1TokenReviewSpec(token=token, audiences=[audience]),
    )
    status, body = await _json(
        AuthenticationV1Api(client).create_token_review(
            review, _preload_content=False, _request_timeout=_TIMEOUT
        ),
        "TokenReview",
    )
    if status not in (200, 201):
        raise APIUnavailable(f"TokenReview: HTTP {status}: {_status_message(body)}")
    result = body.get("status")
    if not isinstance(result, dict) or result.get("authenticated") is not True:
        raise Unauthenticated(
            f"the service-account token was not authenticated for audience {audience!r}"
        )
    audiences = result.get("audiences")
    # An API server that reports audiences must have matched ours (an empty list, too, is
    # "not for you"); one that does not report them checked spec.audiences itself.
    if isinstance(audiences, list) and audience not in audiences:
        raise Unauthenticated(f"the service-account token is not for audience {audience!r}")
    return result


def _user(result: Mapping[str, object]) -> tuple[str, str, str, str]:
    """(namespace, service account, pod name, pod uid) of an authenticated review."""
    user = result.get("user")
    user = user if isinstance(user, dict) else {}
    username = str(user.get("username") or "")
    parts = username.removeprefix(_SA_PREFIX).split(":")
    if not username.startswith(_SA_PREFIX) or len(parts) != 2 or not all(parts):
        raise Forbidden(f"the token belongs to {username!r}, not to a service account")
    extra = user.get("extra")
    extra = extra if isinstance(extra, dict) else {}

    def first(key: str) -> str:
        values = extra.get(key)
        if isinstance(values, list) and values and isinstance(values[0], str):
            return values[0]
        return ""

    pod_name = first(POD_NAME_EXTRA)
    if not pod_name:
        raise Forbidden(
            "the token is not bound to a pod: use a projected service-account token "
            f"(audience {AUDIENCE!r}), not a long-lived Secret token"
        )
    return parts[0], parts[1], pod_name, first(POD_UID_EXTRA)


def pod_app_id(pod: Mapping[str, object]) -> str:
    """The app id a pod runs as: its annotation (daprlite.io, then dapr.io) or the derived one."""
    try:
        annotations = annotations_of(pod)
    except InjectionError:
        return ""
    for prefix in (PREFIX, DAPR_PREFIX):
        value = annotations.get(prefix + "app-id")
        if value is not None:
            return value
    return default_app_id(pod)


async def verify_caller(
    client: ApiClient, token: str, namespace: str, app_id: str, audience: str = AUDIENCE
) -> VerifiedCaller:
    """Check that ``token`` proves the pod runs ``app_id`` in ``namespace``; raises otherwise."""
    result = await review_token(client, token, audience)
    token_ns, service_account, pod_name, pod_uid = _user(result)
    if token_ns != namespace:
        raise Forbidden(
            f"namespace {namespace!r} was asked for, but the token's service account "
            f"is in namespace {token_ns!r}"
        )
    status, pod = await _json(
        CoreV1Api(client).read_namespaced_pod(
            pod_name, namespace, _preload_content=False, _request_timeout=_TIMEOUT
        ),
        f"reading pod {namespace}/{pod_name}",
    )
    if status == 404:
        raise Forbidden(f"the token's pod {namespace}/{pod_name} does not exist")
    if status != 200:
        raise APIUnavailable(
            f"reading pod {namespace}/{pod_name}: HTTP {status}: {_status_message(pod)}"
        )
    metadata = pod.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, dict) else None
    if pod_uid and uid != pod_uid:
        # The pod was deleted and a new one took its name: the token was for the old one.
        raise Forbidden(f"the token's pod {namespace}/{pod_name} has been replaced")
    spec = pod.get("spec")
    pod_sa = (spec.get("serviceAccountName") if isinstance(spec, dict) else None) or "default"
    if pod_sa != service_account:
        raise Forbidden(
            f"pod {namespace}/{pod_name} runs as service account {pod_sa!r}, "
            f"the token is for {service_account!r}"
        )
    try:
        enabled = is_enabled(pod)
    except InjectionError:
        enabled = False  # annotations the injector would have refused
    if not enabled:
        raise Forbidden(
            f"pod {namespace}/{pod_name} does not ask for a sidecar ({PREFIX}enabled is not true)"
        )
    actual = pod_app_id(pod)
    if not is_valid_app_id(actual):
        raise Forbidden(
            f"pod {namespace}/{pod_name} runs app id {actual[:80]!r}, which is not a valid app id "
            f"({PREFIX}app-id: lower-case letters, digits and '-')"
        )
    if actual != app_id:
        raise Forbidden(
            f"app id {app_id!r} was asked for, but pod {namespace}/{pod_name} runs app id "
            f"{actual!r} ({PREFIX}app-id)"
        )
    return VerifiedCaller(namespace, service_account, pod_name, app_id)
