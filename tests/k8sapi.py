"""A small stand-in for the Kubernetes API server, for tests (no cluster runs here).

It serves only what daprlite calls, over HTTPS with its own CA, with the
response shapes of the Kubernetes API reference:

- ``GET /api/v1/namespaces/{ns}/secrets[/{name}]``;
- ``GET /apis/daprlite.io/{version}/namespaces/{ns}/{plural}[/{name}]`` for
  components, configurations, resiliencies and subscriptions;
- lists are ``{kind}List`` objects with ``metadata.resourceVersion``;
- ``?watch=1&resourceVersion=RV[&timeoutSeconds=T]`` streams newline-delimited
  ``{"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}`` events after RV; without
  a resourceVersion (or "0") it first sends every current object as ADDED; a
  resourceVersion older than the last :meth:`K8sAPI.compact` gets an ``ERROR``
  event holding a 410 ``Status`` (reason ``Expired``), as the real server does;
- ``POST /api/v1/namespaces/{ns}/{plural}`` creates an object (201; 409 AlreadyExists);
  a Service gets the defaults the real server fills in (type, sessionAffinity, ip families);
- ``apps/v1`` deployments and statefulsets and core services are also listed and watched
  across all namespaces (``GET /apis/apps/v1/deployments``, ``GET /api/v1/services``);
  lists and watches honour an equality ``labelSelector`` (``k=v,k2=v2``);
- lists honour ``limit``: a page holds at most that many items, and ``metadata.continue``
  (with ``remainingItemCount``) asks for the rest with ``?continue=<token>``; every page
  carries the first page's resourceVersion;
- ``PATCH /api/v1/namespaces/{ns}/services/{name}`` takes a JSON merge patch
  (``application/merge-patch+json``; other patch types get 415), and ``DELETE`` answers
  200 with a ``Success`` Status (404 when absent);
- ``POST /apis/authentication.k8s.io/v1/tokenreviews`` reviews the tokens a test
  registered with :meth:`K8sAPI.add_service_account_token` (201; an unknown token or
  audience gets ``status.authenticated`` unset and an ``error``, as the real one does);
- errors are ``Status`` objects: 401 without the bearer token, 403 for a namespace
  in :attr:`K8sAPI.forbidden_namespaces` (``""``: the all-namespaces paths), 404 for an
  unknown object or path, 503 for watches while :meth:`K8sAPI.refuse_watches` is on.

Tests change objects with :meth:`K8sAPI.put` and :meth:`K8sAPI.delete`, which bump
the resourceVersion and wake open watches. The server runs its own event loop
in a background thread, so both synchronous tests and sidecar subprocesses use it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GROUP = "daprlite.io"
# plural -> (kind, API group, versions served)
RESOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "secrets": ("Secret", "", ("v1",)),
    "pods": ("Pod", "", ("v1",)),
    "services": ("Service", "", ("v1",)),
    "deployments": ("Deployment", "apps", ("v1",)),
    "statefulsets": ("StatefulSet", "apps", ("v1",)),
    "components": ("Component", GROUP, ("v1alpha1",)),
    "configurations": ("Configuration", GROUP, ("v1alpha1",)),
    "resiliencies": ("Resiliency", GROUP, ("v1alpha1",)),
    "subscriptions": ("Subscription", GROUP, ("v2alpha1", "v1alpha1")),
}


def status(code: int, reason: str, message: str) -> dict[str, object]:
    """A ``Status`` object, as the API server sends with every error."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _is_watch(request: web.Request) -> bool:
    # As the API server reads booleans in queries: anything but "false"/"0" is true
    # (kubernetes_asyncio sends "True").
    raw = request.query.get("watch")
    return raw is not None and raw.strip().lower() not in ("false", "0", "")


def _status_response(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status(code, reason, message), status=code)


@dataclass
class _Event:
    rv: int
    plural: str
    namespace: str
    type: str
    obj: dict[str, object]


@dataclass(eq=False)
class _Watcher:
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _certificates(tmp: Path) -> tuple[bytes, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k8sapi stand-in CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "apiserver.crt", tmp / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


@dataclass(frozen=True)
class BoundToken:
    """A projected service-account token: its service account, pod and audiences."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    audiences: tuple[str, ...]
    # What the review reports in status.audiences; None: those asked for that the token has.
    # (Set to model an authenticator that does not check spec.audiences.)
    reported_audiences: tuple[str, ...] | None = None


class K8sAPI:
    """The stand-in API server. Use :func:`running` (or start/stop) around a test."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or uuid.uuid4().hex
        self.forbidden_namespaces: set[str] = set()
        self.tokens: dict[str, BoundToken] = {}  # what TokenReview authenticates
        self.requests: list[str] = []  # "GET /path?query" of every request, in order
        self._objects: dict[tuple[str, str, str], dict[str, object]] = {}
        self._history: list[_Event] = []
        self._rv = 1
        self._oldest = 1  # the oldest resourceVersion a watch may resume from
        self._tick = asyncio.Event()
        self._watchers: set[_Watcher] = set()
        self._refuse_watches = False
        self._tmp = tempfile.TemporaryDirectory(prefix="k8sapi-")
        self.ca_pem, self._cert, self._key = _certificates(Path(self._tmp.name))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> K8sAPI:
        self._thread.start()
        self.port = self._call(self._start)
        return self

    async def _start(self) -> int:
        self._tick = asyncio.Event()  # bound to this loop
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/api/v1/namespaces/{ns}/{plural}", self._list)
        app.router.add_post("/api/v1/namespaces/{ns}/{plural}", self._create)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        app.router.add_get("/api/v1/namespaces/{ns}/{plural}/{name}", self._get)
        app.router.add_get("/apis/{group}/{version}/namespaces/{ns}/{plural}", self._list)
        app.router.add_get("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", self._get)
        app.router.add_patch("/api/v1/namespaces/{ns}/{plural}/{name}", self._patch)
        app.router.add_delete("/api/v1/namespaces/{ns}/{plural}/{name}", self._delete_request)
        # Lists and watches across all namespaces.
        app.router.add_get("/api/v1/{plural}", self._list)
        app.router.add_get("/apis/{group}/{version}/{plural}", self._list)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self._cert, self._key)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        return int(server.sockets[0].getsockname()[1])

    def stop(self) -> None:
        if self._runner is not None:
            self._call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._tmp.cleanup()

    async def _stop(self) -> None:
        for w in self._watchers:
            w.stop.set()
        assert self._runner is not None
        await self._runner.cleanup()

    def _call(self, fn: Callable[[], object]) -> Any:
        """Run ``fn`` (a coroutine function or a plain one) on the server's loop; its result."""

        async def run() -> object:
            out = fn()
            if asyncio.iscoroutine(out):
                out = await out
            return out

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default", token: str = "") -> Path:
        """A kubeconfig for this server: its CA, the bearer token, and ``namespace``."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "standin",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "sidecar", "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "sidecar", "namespace": namespace},
                }
            ],
            "current-context": "standin",
        }
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path

    # -- what tests change ----------------------------------------------------------------
    def put(self, obj: Mapping[str, object]) -> dict[str, object]:
        """Create or replace ``obj`` (kind and metadata.namespace/name given); emits an event."""
        return self._call(lambda: self._put(copy.deepcopy(dict(obj))))

    def put_secret(
        self, namespace: str, name: str, data: Mapping[str, str | bytes]
    ) -> dict[str, object]:
        encoded = {
            k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
            for k, v in data.items()
        }
        return self.put(
            {
                "kind": "Secret",
                "apiVersion": "v1",
                "metadata": {"name": name, "namespace": namespace},
                "type": "Opaque",
                "data": encoded,
            }
        )

    def get(self, plural: str, namespace: str, name: str) -> dict[str, object] | None:
        """A copy of the stored object, or None."""
        return self._call(lambda: copy.deepcopy(self._objects.get((plural, namespace, name))))

    def add_service_account_token(
        self,
        token: str,
        namespace: str,
        service_account: str,
        pod_name: str,
        audiences: tuple[str, ...] = ("daprlite-sentry",),
        reported_audiences: tuple[str, ...] | None = None,
    ) -> None:
        """Make TokenReview accept ``token`` as bound to that pod (put the pod first).

        ``pod_name`` "" makes a token bound to no pod (a long-lived Secret token).
        """
        pod = self.get("pods", namespace, pod_name) if pod_name else None
        meta = pod.get("metadata") if pod else None
        uid = str(meta.get("uid", "")) if isinstance(meta, dict) else ""
        self.tokens[token] = BoundToken(
            namespace, service_account, pod_name, uid, audiences, reported_audiences
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self._call(lambda: self._delete(plural, namespace, name))

    def compact(self) -> None:
        """Forget the event history: a watch from an older resourceVersion now gets 410."""
        self._call(self._compact)

    def drop_watches(self) -> int:
        """End every open watch stream (as a server restart would); how many were open."""
        return self._call(self._drop_watches)

    def refuse_watches(self, refuse: bool = True) -> None:
        """While on, open watches end and new ones get 503, as during a control-plane restart."""

        def switch() -> None:
            self._refuse_watches = refuse
            if refuse:
                self._drop_watches()

        self._call(switch)

    def open_watches(self) -> int:
        return self._call(lambda: len(self._watchers))

    @property
    def resource_version(self) -> int:
        return self._call(lambda: self._rv)

    def _plural_of(self, kind: str) -> str:
        for plural, (k, _, _) in RESOURCES.items():
            if k == kind:
                return plural
        raise ValueError(f"the stand-in does not serve kind {kind!r}")

    def _put(self, obj: dict[str, object]) -> dict[str, object]:
        plural = self._plural_of(str(obj["kind"]))
        meta = obj.setdefault("metadata", {})
        assert isinstance(meta, dict)
        key = (plural, str(meta["namespace"]), str(meta["name"]))
        old = self._objects.get(key)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.datetime.now(datetime.UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            meta["generation"] = 1
        else:
            old_meta = old["metadata"]
            assert isinstance(old_meta, dict)
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        self._objects[key] = obj
        self._emit(plural, key[1], "ADDED" if old is None else "MODIFIED", obj)
        return copy.deepcopy(obj)

    def _delete(self, plural: str, namespace: str, name: str) -> None:
        obj = self._objects.pop((plural, namespace, name))
        self._rv += 1
        final = copy.deepcopy(obj)
        meta = final["metadata"]
        assert isinstance(meta, dict)
        meta["resourceVersion"] = str(self._rv)
        self._emit(plural, namespace, "DELETED", final)

    def _emit(self, plural: str, namespace: str, kind: str, obj: dict[str, object]) -> None:
        self._history.append(_Event(self._rv, plural, namespace, kind, copy.deepcopy(obj)))
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    def _compact(self) -> None:
        self._history.clear()
        self._oldest = self._rv

    def _drop_watches(self) -> int:
        for w in self._watchers:
            w.stop.set()
        return len(self._watchers)

    # -- HTTP -----------------------------------------------------------------------------
    @web.middleware
    async def _auth(
        self, request: web.Request, handler: Callable[[web.Request], object]
    ) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        header = request.headers.get("Authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or credential.strip() != self.token:
            return _status_response(401, "Unauthorized", "Unauthorized")
        out = handler(request)
        assert asyncio.iscoroutine(out)
        response = await out
        assert isinstance(response, web.StreamResponse)
        return response

    def _resource(self, request: web.Request) -> tuple[str, str, str] | web.Response:
        """(plural, kind, apiVersion) of the request's path, or the error to answer."""
        plural = request.match_info["plural"]
        group = request.match_info.get("group", "")
        version = request.match_info.get("version", "v1")
        known = RESOURCES.get(plural)
        if known is None or known[1] != group or version not in known[2]:
            return _status_response(
                404, "NotFound", "the server could not find the requested resource"
            )
        namespace = request.match_info.get("ns", "")
        if namespace in self.forbidden_namespaces:
            verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(
                request.method, "get" if "name" in request.match_info else "list"
            )
            if _is_watch(request):
                verb = "watch"
            # "" in forbidden_namespaces forbids the cluster-scoped (all namespaces) paths.
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            return _status_response(
                403,
                "Forbidden",
                f'{plural} is forbidden: User "system:serviceaccount:test:sidecar" cannot '
                f'{verb} resource "{plural}" in API group "{group}" {scope}',
            )
        return plural, known[0], f"{group}/{version}" if group else version

    async def _create(self, request: web.Request) -> web.StreamResponse:
        found = self._resource(request)
        if isinstance(found, web.Response):
            return found
        plural, kind, api_version = found
        try:
            obj = json.loads(await request.read())
        except ValueError as exc:
            return _status_response(400, "BadRequest", f"invalid JSON body: {exc}")
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict) or not meta.get("name"):
            return _status_response(422, "Invalid", f"{kind} is invalid: metadata.name: Required")
        namespace = request.match_info["ns"]
        meta["namespace"] = namespace
        if (plural, namespace, str(meta["name"])) in self._objects:
            return _status_response(
                409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists'
            )
        obj["kind"], obj["apiVersion"] = kind, api_version
        if kind == "Service":
            _service_defaults(obj)
        return web.json_response(self._shaped(self._put(obj), kind, api_version), status=201)

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        found = self._resource(request)
        if isinstance(found, web.Response):
            return found
        plural, kind, api_version = found
        if request.content_type != "application/merge-patch+json":
            return _status_response(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/merge-patch+json (got {request.content_type})",
            )
        try:
            patch = json.loads(await request.read())
        except ValueError as exc:
            return _status_response(400, "BadRequest", f"invalid JSON body: {exc}")
        name, namespace = request.match_info["name"], request.match_info["ns"]
        old = self._objects.get((plural, namespace, name))
        if old is None:
            return _status_response(404, "NotFound", f'{plural} "{name}" not found')
        merged = _merge_patch(copy.deepcopy(old), patch)
        if not isinstance(merged, dict):
            return _status_response(422, "Invalid", f"{kind} is invalid: expected an object")
        meta = merged.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, namespace
        merged["kind"], merged["apiVersion"] = kind, api_version
        spec, old_spec = merged.get("spec"), old.get("spec")
        if (
            kind == "Service"
            and isinstance(spec, dict)
            and isinstance(old_spec, dict)
            and spec.get("clusterIP") != old_spec.get("clusterIP")
        ):
            return _status_response(
                422,
                "Invalid",
                f'Service "{name}" is invalid: spec.clusterIP: Invalid value: '
                f'"{spec.get("clusterIP")}": field is immutable',
            )
        return web.json_response(self._shaped(self._put(merged), kind, api_version))

    async def _delete_request(self, request: web.Request) -> web.StreamResponse:
        found = self._resource(request)
        if isinstance(found, web.Response):
            return found
        plural = found[0]
        name, namespace = request.match_info["name"], request.match_info["ns"]
        old = self._objects.get((plural, namespace, name))
        if old is None:
            return _status_response(404, "NotFound", f'{plural} "{name}" not found')
        meta = old["metadata"]
        assert isinstance(meta, dict)
        self._delete(plural, namespace, name)
        return web.json_response(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "kind": plural, "uid": meta["uid"]},
            }
        )

    async def _token_review(self, request: web.Request) -> web.StreamResponse:
        try:
            review = json.loads(await request.read())
            spec = review["spec"]
            token = spec["token"]
        except (ValueError, KeyError, TypeError):
            return _status_response(400, "BadRequest", "expected a TokenReview with spec.token")
        wanted = list(spec.get("audiences") or [])
        bound = self.tokens.get(token)
        result: dict[str, object]
        if bound is None:
            result = {"user": {}, "error": "[invalid bearer token, service account token invalid]"}
        elif wanted and not set(wanted) & set(bound.audiences):
            result = {"user": {}, "error": "token audiences are invalid for the target audiences"}
        else:
            extra: dict[str, list[str]] = {}
            if bound.pod_name:
                extra["authentication.kubernetes.io/pod-name"] = [bound.pod_name]
            if bound.pod_uid:
                extra["authentication.kubernetes.io/pod-uid"] = [bound.pod_uid]
            result = {
                "authenticated": True,
                "user": {
                    "username": f"system:serviceaccount:{bound.namespace}:{bound.service_account}",
                    "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, bound.service_account)),
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{bound.namespace}",
                        "system:authenticated",
                    ],
                    "extra": extra,
                },
                "audiences": list(bound.reported_audiences)
                if bound.reported_audiences is not None
                else [a for a in wanted if a in bound.audiences] or list(bound.audiences),
            }
        return web.json_response(
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": result,
            },
            status=201,
        )

    def _shaped(self, obj: Mapping[str, object], kind: str, api_version: str) -> dict[str, object]:
        out = copy.deepcopy(dict(obj))
        out["kind"], out["apiVersion"] = kind, api_version
        return out

    async def _get(self, request: web.Request) -> web.StreamResponse:
        found = self._resource(request)
        if isinstance(found, web.Response):
            return found
        plural, kind, api_version = found
        name, namespace = request.match_info["name"], request.match_info["ns"]
        obj = self._objects.get((plural, namespace, name))
        if obj is None:
            group = RESOURCES[plural][1]
            qualified = f"{plural}.{group}" if group else plural
            return _status_response(404, "NotFound", f'{qualified} "{name}" not found')
        return web.json_response(self._shaped(obj, kind, api_version))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        found = self._resource(request)
        if isinstance(found, web.Response):
            return found
        plural, kind, api_version = found
        namespace = request.match_info.get("ns")  # None: all namespaces
        selector = _label_selector(request.query.get("labelSelector", ""))
        if selector is None:
            return _status_response(
                400, "BadRequest", "unable to parse requirement: expected key=value pairs"
            )
        if _is_watch(request):
            return await self._watch(request, plural, namespace, kind, api_version, selector)
        page = _page_request(request)
        if isinstance(page, web.Response):
            return page
        limit, list_rv, after = page
        # Built-in lists (not custom resources) leave kind and apiVersion off their items.
        core = RESOURCES[plural][1] != GROUP
        items = []
        keys: list[tuple[str, str, str]] = []
        for key, obj in sorted(self._objects.items()):
            p, ns, _ = key
            if after is not None and key <= after:
                continue  # returned by an earlier page
            if p == plural and namespace in (None, ns) and _selected(obj, selector):
                item = self._shaped(obj, kind, api_version)
                if core:
                    item.pop("kind")
                    item.pop("apiVersion")
                items.append(item)
                keys.append(key)
        meta: dict[str, object] = {"resourceVersion": str(list_rv or self._rv)}
        if limit and len(items) > limit:
            # Every page of one list carries the first page's resourceVersion, as the real
            # server's (which serves all pages from that snapshot).
            meta["continue"] = _continue_token(list_rv or self._rv, keys[limit - 1])
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        return web.json_response(
            {
                "kind": f"{kind}List",
                "apiVersion": api_version,
                "metadata": meta,
                "items": items,
            }
        )

    async def _watch(
        self,
        request: web.Request,
        plural: str,
        namespace: str | None,
        kind: str,
        api_version: str,
        selector: Mapping[str, str],
    ) -> web.StreamResponse:
        if self._refuse_watches:
            return _status_response(
                503, "ServiceUnavailable", "the server is currently unable to handle the request"
            )
        raw_rv = request.query.get("resourceVersion", "")
        try:
            since = int(raw_rv) if raw_rv else 0
        except ValueError:
            return _status_response(400, "BadRequest", f"invalid resource version {raw_rv!r}")
        timeout = float(request.query.get("timeoutSeconds", "0") or 0)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)

        async def send(event_type: str, obj: Mapping[str, object]) -> None:
            line = json.dumps({"type": event_type, "object": obj}) + "\n"
            await response.write(line.encode())

        if since and since < self._oldest:
            await send(
                "ERROR",
                status(410, "Expired", f"too old resource version: {since} ({self._oldest})"),
            )
            return response
        pending: list[_Event] = []
        if not since:  # "0" or none: the current objects first, as synthetic ADDED events
            for (p, ns, _), obj in sorted(self._objects.items()):
                if p == plural and namespace in (None, ns) and _selected(obj, selector):
                    await send("ADDED", self._shaped(obj, kind, api_version))
            since = self._rv
        watcher = _Watcher()
        self._watchers.add(watcher)
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        try:
            while not watcher.stop.is_set():
                pending = [
                    e
                    for e in self._history
                    if e.rv > since
                    and e.plural == plural
                    and namespace in (None, e.namespace)
                    and _selected(e.obj, selector)
                ]
                for e in pending:
                    await send(e.type, self._shaped(e.obj, kind, api_version))
                    since = e.rv
                if pending:
                    continue
                tick = self._tick
                stop = asyncio.ensure_future(watcher.stop.wait())
                changed = asyncio.ensure_future(tick.wait())
                left = None if deadline is None else deadline - asyncio.get_running_loop().time()
                if left is not None and left <= 0:
                    stop.cancel()
                    changed.cancel()
                    break
                await asyncio.wait({stop, changed}, timeout=left, return_when="FIRST_COMPLETED")
                stop.cancel()
                changed.cancel()
                if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._watchers.discard(watcher)
        return response


def _continue_token(list_rv: int, last: tuple[str, str, str]) -> str:
    raw = json.dumps({"rv": list_rv, "after": list(last)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _page_request(
    request: web.Request,
) -> tuple[int, int, tuple[str, str, str] | None] | web.Response:
    """``(limit, first page's resourceVersion, last key sent)`` of a paged list, or the 400.

    Without ``limit`` every item comes in one page; ``continue`` resumes after the
    last object of the page that returned it (0 and None when absent).
    """
    raw_limit = request.query.get("limit", "")
    try:
        limit = int(raw_limit) if raw_limit else 0
    except ValueError:
        return _status_response(400, "BadRequest", f"invalid limit {raw_limit!r}")
    token = request.query.get("continue", "")
    if not token:
        return max(limit, 0), 0, None
    try:
        doc = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = doc["after"]
        return max(limit, 0), int(doc["rv"]), (str(after[0]), str(after[1]), str(after[2]))
    except (ValueError, KeyError, TypeError, IndexError):
        return _status_response(400, "BadRequest", "continue key is not valid")


def _label_selector(raw: str) -> dict[str, str] | None:
    """An equality label selector (``k=v,k2==v2``) as a map; None when it is not one."""
    out: dict[str, str] = {}
    for term in (t.strip() for t in raw.split(",")):
        if not term:
            continue
        key, sep, value = term.replace("==", "=").partition("=")
        if not sep or not key.strip() or "!" in key:
            return None
        out[key.strip()] = value.strip()
    return out


def _selected(obj: Mapping[str, object], selector: Mapping[str, str]) -> bool:
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    labels = labels if isinstance(labels, Mapping) else {}
    return all(labels.get(k) == v for k, v in selector.items())


def _merge_patch(target: object, patch: object) -> object:
    """RFC 7386: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


def _service_defaults(obj: dict[str, object]) -> None:
    """What the API server fills into a new Service's spec (headless: no cluster IP)."""
    spec = obj.setdefault("spec", {})
    assert isinstance(spec, dict)
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("ipFamilies", ["IPv4"])
    cluster_ip = spec.setdefault("clusterIP", "10.96.0.10")
    spec.setdefault("clusterIPs", [cluster_ip])
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
    obj.setdefault("status", {"loadBalancer": {}})


@contextmanager
def running(token: str | None = None) -> Iterator[K8sAPI]:
    """A started stand-in, stopped when the block exits."""
    api = K8sAPI(token).start()
    try:
        yield api
    finally:
        api.stop()


def component(
    name: str,
    namespace: str,
    component_type: str,
    metadata: list[dict[str, object]] | None = None,
    *,
    scopes: list[str] | None = None,
    secret_store: str = "",
) -> dict[str, object]:
    """A ``daprlite.io/v1alpha1`` Component object, as kubectl would create it."""
    obj: dict[str, object] = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": component_type, "version": "v1", "metadata": metadata or []},
    }
    if scopes is not None:
        obj["scopes"] = scopes
    if secret_store:
        obj["auth"] = {"secretStore": secret_store}
    return obj
