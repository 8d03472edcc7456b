"""The injector's HTTPS endpoint: AdmissionReview v1 in, a JSON Patch for the pod out.

The API server calls ``POST /mutate`` (from the MutatingWebhookConfiguration)
with every pod being created. This module only parses the AdmissionReview,
calls the pure ``injector.patch.build_patch`` and shapes the answer; a
malformed annotation becomes ``allowed: false`` naming it, a body that is not
an AdmissionReview a 400. The serving certificate is read again whenever its
files change (cert-manager or a Secret volume rotates them), without a restart;
so is the trust-anchors file, so that pods created after the CA Secret changes
get the new anchors.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from daprlite import errors
from daprlite.injector.annotations import InjectionError
from daprlite.injector.patch import InjectorConfig, JsonPatchOp, build_patch

log = logging.getLogger("daprlite.injector")

REVIEW_API_VERSION = "admission.k8s.io/v1"
# A Kubernetes object is at most ~1.5 MiB (etcd's limit); the review wraps one or two of them.
MAX_BODY = 4 * 1024 * 1024


class LiveConfig:
    """The :class:`InjectorConfig` the webhook uses now; a reload swaps in a new one."""

    def __init__(self, config: InjectorConfig) -> None:
        self.current = config


CONFIG_KEY = web.AppKey("injector_config", LiveConfig)


class BadReview(ValueError):
    """The request body is not an AdmissionReview v1 with a request in it."""


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of ``AdmissionReview.request`` the injector uses."""

    uid: str
    kind: str
    operation: str
    namespace: str
    name: str
    object: Mapping[str, object]


def parse_review(body: object) -> AdmissionRequest:
    """Check the shape of an AdmissionReview v1; raises :class:`BadReview` naming the field."""
    if not isinstance(body, Mapping):
        raise BadReview("expected an AdmissionReview JSON object")
    if body.get("apiVersion") != REVIEW_API_VERSION or body.get("kind") != "AdmissionReview":
        raise BadReview(
            f"expected apiVersion {REVIEW_API_VERSION!r} and kind 'AdmissionReview', got "
            f"{body.get('apiVersion')!r} / {body.get('kind')!r}"
        )
    request = body.get("request")
    if not isinstance(request, Mapping):
        raise BadReview("request: expected an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid: expected a non-empty string")
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or not isinstance(kind.get("kind"), str):
        raise BadReview("request.kind: expected {group, version, kind}")
    operation = request.get("operation")
    if not isinstance(operation, str):
        raise BadReview("request.operation: expected a string")
    obj = request.get("object")
    if obj is not None and not isinstance(obj, Mapping):
        raise BadReview("request.object: expected an object")
    return AdmissionRequest(
        uid=uid,
        kind=str(kind["kind"]),
        operation=operation,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        object=obj or {},
    )


def admit(request: AdmissionRequest, config: InjectorConfig) -> dict[str, object]:
    """The ``response`` of the AdmissionReview for one request."""
    response: dict[str, object] = {"uid": request.uid, "allowed": True}
    if request.kind != "Pod" or request.operation != "CREATE":
        return response
    try:
        patch = build_patch(request.object, config)
    except InjectionError as exc:
        log.info("refused pod %s in %s: %s", _pod_name(request), request.namespace or "-", exc)
        return {
            "uid": request.uid,
            "allowed": False,
            "status": {
                "status": "Failure",
                "code": 400,
                "reason": "BadRequest",
                "message": str(exc),
            },
        }
    if patch:
        log.info("injected a sidecar into pod %s in %s", _pod_name(request), request.namespace)
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(patch)
    return response


def encode_patch(patch: list[JsonPatchOp]) -> str:
    """The base64 of the patch's JSON, as ``AdmissionResponse.patch`` carries it."""
    return base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()


def _pod_name(request: AdmissionRequest) -> str:
    if request.name:
        return request.name
    metadata = request.object.get("metadata")
    generate = metadata.get("generateName") if isinstance(metadata, Mapping) else None
    return f"{generate}*" if isinstance(generate, str) else "(unnamed)"


async def mutate(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
        review = parse_review(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser can follow.
        bad = errors.MALFORMED_REQUEST(f"not an AdmissionReview {REVIEW_API_VERSION}: {exc}")
        return web.json_response(bad.body(), status=bad.http_status)
    response = admit(review, request.app[CONFIG_KEY].current)
    return web.json_response(
        {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}
    )


async def healthz(request: web.Request) -> web.Response:
    return web.Response(status=204)


def make_app(config: LiveConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[CONFIG_KEY] = config
    app.add_routes([web.post("/mutate", mutate), web.get("/healthz", healthz)])
    return app


class CertificateReloader:
    """Serves the newest valid certificate: every handshake picks the current context.

    The listening socket keeps one :class:`ssl.SSLContext` for its whole life; its SNI
    callback (which OpenSSL calls even when the client sends no server name) hands each
    new connection the context loaded last. A pair that fails to load (the certificate
    already replaced, the key not yet) keeps the previous one until the next check.
    """

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        self._cert_file = cert_file
        self._key_file = key_file
        self._stamp = self._files_stamp()
        self._current = self._load()
        self.context = self._load()
        self.context.sni_callback = self._choose

    def _files_stamp(self) -> tuple[tuple[int, int, int], ...]:
        return files_stamp(self._cert_file, self._key_file)

    def _load(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert_file, self._key_file)
        return ctx

    def _choose(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        conn.context = self._current

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; ``True`` when a new pair is now served."""
        try:
            stamp = self._files_stamp()
        except OSError as exc:
            log.warning("TLS files not readable (keeping the current certificate): %s", exc)
            return False
        if stamp == self._stamp:
            return False
        try:
            fresh = self._load()
        except (OSError, ssl.SSLError) as exc:
            log.warning("new TLS files do not load yet (keeping the current one): %s", exc)
            return False
        self._current, self._stamp = fresh, stamp
        log.info("serving the rotated TLS certificate from %s", self._cert_file)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


def files_stamp(*paths: Path) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is replaced; raises OSError when one cannot be read."""
    # A Secret volume swaps a symlink: the inode changes even when mtime may not.
    stats = [os.stat(path) for path in paths]
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def read_trust_anchors(path: Path) -> str:
    """The PEM bundle in ``path``; raises ValueError naming the flag, the file and the problem."""
    try:
        pem = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"--trust-anchors-file {path}: {why}") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError(f"--trust-anchors-file {path}: expected PEM certificates")
    return pem


class TrustAnchorsReloader:
    """Puts the newest valid ``--trust-anchors-file`` into the live config.

    The file is usually the ``ca.crt`` of the sentry's CA Secret mounted as a volume;
    when the CA changes, pods created from then on get the new bundle. A file that
    does not read as PEM certificates (mid-rotation) keeps the previous bundle.
    """

    def __init__(self, path: Path, live: LiveConfig) -> None:
        self._path = path
        self._live = live
        self._stamp = files_stamp(path)
        self._apply(read_trust_anchors(path))

    def _apply(self, pem: str) -> None:
        self._live.current = replace(self._live.current, trust_anchors=pem)

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed; ``True`` when new anchors are now injected."""
        try:
            stamp = files_stamp(self._path)
        except OSError as exc:
            log.warning("trust anchors not readable (keeping the current ones): %s", exc)
            return False
        if stamp == self._stamp:
            return False
        try:
            pem = read_trust_anchors(self._path)
        except ValueError as exc:
            log.warning("new trust anchors do not load yet (keeping the current ones): %s", exc)
            return False
        self._stamp = stamp
        if pem == self._live.current.trust_anchors:
            return False
        self._apply(pem)
        log.info("injecting the changed trust anchors from %s into new pods", self._path)
        return True

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Where and how the webhook listens (the ``daprlite injector`` flags)."""

    port: int
    cert_file: Path
    key_file: Path
    listen_address: str = "0.0.0.0"
    reload_interval: float = 2.0  # seconds between checks of the TLS and trust-anchors files
    trust_anchors_file: Path | None = None  # None: the config's trust_anchors, never reloaded


async def serve(options: ServerOptions, config: InjectorConfig, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then close the listener and finish in-flight requests."""
    certs = CertificateReloader(options.cert_file, options.key_file)
    live = LiveConfig(config)
    watchers = [asyncio.create_task(certs.watch(options.reload_interval))]
    if options.trust_anchors_file is not None:
        anchors = TrustAnchorsReloader(options.trust_anchors_file, live)
        watchers.append(asyncio.create_task(anchors.watch(options.reload_interval)))
    runner = web.AppRunner(make_app(live), access_log=None)
    try:
        await runner.setup()
        site = web.TCPSite(runner, options.listen_address, options.port, ssl_context=certs.context)
        await site.start()
        log.info("injector listening on https://%s:%d", options.listen_address, options.port)
        await stop.wait()
    finally:
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await runner.cleanup()
