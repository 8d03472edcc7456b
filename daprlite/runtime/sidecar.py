"""The sidecar lifecycle: start-up in DESIGN.md's order, shutdown in reverse.

1. options (given); 2. resources; 3-4. secret stores, then other components;
6. listeners bind their ports (``/healthz/outbound`` turns 204);
7. wait for the app's port (``/healthz`` turns 204); 9. ready.
Everything is entered on one :class:`AsyncExitStack`, so :meth:`Sidecar.stop`
unwinds it in reverse: listeners stop accepting, in-flight requests drain
within the grace period, then components close.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from daprlite.blocks.auth import AuthAPI
from daprlite.blocks.bindings import BindingsAPI
from daprlite.blocks.invoke.api import InvokeAPI
from daprlite.blocks.invoke.external import ExternalCaller, load_endpoints
from daprlite.blocks.invoke.local import InvokableChannel, LocalApp
from daprlite.blocks.invoke.model import Caller
from daprlite.blocks.metadata import AppConnection, Health, MetadataAPI
from daprlite.blocks.middleware import API_FIELD, APP_FIELD, Pipeline, configure_pipelines
from daprlite.blocks.pubsub.api import PubSubAPI
from daprlite.blocks.pubsub.subscriptions import Subscription, from_resource
from daprlite.blocks.secrets import SecretsAPI
from daprlite.blocks.state import StateAPI
from daprlite.channel.grpc import GRPCAppChannel
from daprlite.channel.h2c import H2CAppChannel
from daprlite.channel.http import HTTPAppChannel
from daprlite.components.nameresolution import runfolder
from daprlite.components.nameresolution.api import SelfInfo
from daprlite.components.nameresolution.loader import open_resolver
from daprlite.components.registry import Registry
from daprlite.config.configuration import Configuration, build_configuration
from daprlite.config.options import Options
from daprlite.config.resources import Resource, ResourceLoader
from daprlite.observability.metrics import Metrics
from daprlite.resiliency import Resiliency
from daprlite.runtime.apphealth import AppHealth
from daprlite.runtime.bindings import AppChannel, start_input_bindings
from daprlite.runtime.identity import open_identity, trust_domain_of
from daprlite.runtime.processor import ComponentProcessor
from daprlite.runtime.registry import ComponentStore
from daprlite.runtime.servers import (
    start_grpc,
    start_http,
    start_internal,
    start_metrics,
    start_proxy_listener,
    start_public,
)
from daprlite.runtime.streaming import StreamingSubscriptions
from daprlite.runtime.subscriptions import start_subscriptions
from daprlite.security.acl import DEFAULT_TRUST_DOMAIN, Identity
from daprlite.security.mtls import WorkloadIdentity
from daprlite.transport.internal.client import InternalClient

log = logging.getLogger("daprlite.runtime")


@dataclass(frozen=True, slots=True)
class BoundPorts:
    http: int
    grpc: int
    internal: int = 0
    proxy: int = 0  # the mTLS gRPC proxy listener (0: mTLS off)
    metrics: int = 0  # the Prometheus metrics port (0: metrics off)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("start-up after the app came up failed", exc_info=task.exception())


class Sidecar:
    """One daprlite sidecar: components, blocks, and the HTTP and gRPC listeners."""

    def __init__(self, options: Options, registry: Registry | None = None) -> None:
        self.options = options
        self.registry = registry or Registry()
        self.components = ComponentStore()
        self.health = Health()
        self.resiliency = Resiliency.build(())  # replaced by the loaded policies in _start
        self.state = StateAPI(self.components, options.app_id, options.namespace)
        self.bindings = BindingsAPI(self.components)
        self.pubsub = PubSubAPI(self.components, options.app_id)
        self._declared_subscriptions: list[Subscription] = []
        self.subscriptions: list[Subscription] = []
        self.input_bindings: list[str] = []  # the input bindings delivering to the app
        self.streaming = StreamingSubscriptions(self.pubsub, options.app_id)
        self.secrets = SecretsAPI(self.components, Configuration())
        self.auth = AuthAPI(self.components)
        self.app_channel: AppChannel | None = None
        self.metrics: Metrics | None = None  # set in _start when metrics are on
        app_conn = None
        if options.app_port:
            app_conn = AppConnection(
                options.app_port,
                options.app_protocol,
                options.app_channel_address,
                options.app_max_concurrency,
                options.app_health,
            )
        self.metadata = MetadataAPI(options.app_id, self.components, app_conn)
        self.metadata.subscriptions = lambda: [*self.subscriptions, *self.streaming.active()]
        self.app_health = AppHealth(options.app_health) if options.app_health else None
        # Filled from the Configuration once the components are loaded (configure_pipelines).
        self.api_pipeline = Pipeline(API_FIELD)
        self.app_pipeline = Pipeline(APP_FIELD)
        self.local_app = LocalApp(
            options.app_id,
            options.namespace,
            self._invokable_channel,
            app_is_grpc=options.app_protocol in ("grpc", "grpcs"),
            is_healthy=self._app_is_healthy if self.app_health else None,
            access_check=self.access_allowed,
        )
        self.identity: WorkloadIdentity | None = None  # set when mTLS is on
        self.internal_client = InternalClient(options.max_body_size)
        self.invoke = InvokeAPI(Caller(options.app_id, options.namespace), self.local_app)
        self.instance: runfolder.Instance | None = None
        self._record: Path | None = None
        self.ports: BoundPorts | None = None
        self._stack = AsyncExitStack()
        self._shutdown = asyncio.Event()
        self._app_wait: asyncio.Task[None] | None = None

    @property
    def exit_stack(self) -> AsyncExitStack:
        """Where start-up enters what stop unwinds (listeners register their shutdown here)."""
        return self._stack

    # -- start ---------------------------------------------------------------------------
    async def start(self) -> BoundPorts:
        """Load everything and bind the listeners. Raises on any start-up error."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        assert self.ports is not None
        return self.ports

    async def _start(self) -> None:
        opts = self.options
        loader = ResourceLoader(opts.app_id, opts.namespace)
        resources = loader.load(opts.resources_paths, opts.config_files)
        kubernetes = None
        if opts.mode == "kubernetes":
            from daprlite.kubernetes.mode import KubernetesMode  # needs daprlite[kubernetes]

            kubernetes = await KubernetesMode.open(opts, self._stack)
            await kubernetes.load_into(resources, opts.config_names)
        self.secrets.configuration = build_configuration(resources.configurations)
        self.metadata.resiliencies = tuple(r.name for r in resources.resiliencies)
        self.invoke.sampling_rate = self.secrets.configuration.tracing_sampling_rate
        self.resiliency = Resiliency.build(resources.resiliencies)
        # Parsed now so that an invalid Subscription (a routing rule that cannot
        # be evaluated) stops start-up with the file and field named.
        self._declared_subscriptions = [
            s for s in (from_resource(r) for r in resources.subscriptions) if s is not None
        ]
        self.invoke.resiliency = self.resiliency
        self.state.resiliency = self.resiliency
        self.bindings.resiliency = self.resiliency  # also used for input-binding deliveries
        self.secrets.resiliency = self.resiliency
        self.pubsub.resiliency = self.resiliency
        if opts.enable_metrics and self.secrets.configuration.metric.enabled:
            self.metrics = Metrics(opts.app_id, self.secrets.configuration.metric, opts.namespace)
        self.invoke.metrics = self.pubsub.metrics = self.metrics
        processor = ComponentProcessor(
            self.registry,
            self.components,
            opts.app_id,
            opts.namespace,
            default_secret_store=kubernetes.default_secret_store if kubernetes else "",
            metrics=self.metrics,
        )
        await processor.load_all(resources.components, self._stack)
        self.auth.bind(self.state)  # auth.sessions keep their records through the state block
        if kubernetes is not None:
            kubernetes.start_watch(processor, self.registry.category, self._held, self._stack)
        await configure_pipelines(
            self.secrets.configuration, self.components, self.api_pipeline, self.app_pipeline
        )
        await self._start_external(resources.http_endpoints)
        await self._start_mtls()
        internal_port = await start_internal(self)
        http_port = await start_http(self)
        grpc_port = await start_grpc(self)
        proxy_port = await start_proxy_listener(self)
        await start_public(self)
        metrics_port = await start_metrics(self)
        self.ports = BoundPorts(http_port, grpc_port, internal_port, proxy_port, metrics_port)
        await self._start_name_resolution()
        self.health.outbound_ready = True
        log.info(
            "HTTP API on port %d, gRPC API on port %d, internal invocation on port %d, %s",
            http_port,
            grpc_port,
            internal_port,
            f"metrics on port {metrics_port}" if metrics_port else "metrics off",
        )
        if opts.app_port:
            await self._open_app_channel(opts.app_port)
            if self.app_health is not None and self.app_channel is not None:
                probe = asyncio.create_task(self.app_health.run(self.app_channel))
                self._stack.callback(probe.cancel)
            self._app_wait = asyncio.create_task(self._wait_for_app(opts.app_port))
            self._app_wait.add_done_callback(_log_failure)
            self._stack.callback(self._app_wait.cancel)
        else:
            self._mark_ready()

    async def _open_app_channel(self, port: int) -> None:
        opts = self.options
        token = os.environ.get("APP_API_TOKEN") or None
        channel: AppChannel
        if opts.app_protocol in ("grpc", "grpcs"):
            channel = GRPCAppChannel(
                opts.app_channel_address,
                port,
                opts.app_max_concurrency,
                token,
                max_message_size=opts.max_body_size,
            )
        elif opts.app_protocol == "h2c":
            channel = H2CAppChannel(
                opts.app_channel_address,
                port,
                opts.app_max_concurrency,
                token,
                self.app_pipeline,
                self._own_client(),
            )
        else:
            channel = HTTPAppChannel(
                opts.app_channel_address,
                port,
                opts.app_protocol,
                opts.app_max_concurrency,
                token,
                self.app_pipeline,  # spec.appHttpPipeline runs on every call but health probes
                self._own_client(),
                metrics=self.metrics,
            )
        await channel.start()
        self._stack.push_async_callback(channel.close)
        self.app_channel = channel

    def _own_client(self) -> str:
        """The client the app pipeline keys on for calls the sidecar makes on its own behalf."""
        return f"{self.options.app_id}.{self.options.namespace or 'default'}"

    def _held(self, category: str, name: str) -> str:
        """Why a component reload must wait for a restart, or '' (``--mode kubernetes``)."""
        from daprlite.kubernetes.mode import held_reason

        subscribed = [*self._declared_subscriptions, *self.subscriptions, *self.streaming.active()]
        return held_reason(category, name, (s.pubsub for s in subscribed), self.input_bindings)

    def _app_is_healthy(self) -> bool:
        return self.app_health is None or self.app_health.healthy

    def grpc_app_target(self) -> str | None:
        opts = self.options
        if not opts.app_port or opts.app_protocol not in ("grpc", "grpcs"):
            return None
        return f"{opts.app_channel_address}:{opts.app_port}"

    def _invokable_channel(self) -> InvokableChannel | None:
        return self.app_channel  # both app channels implement invoke()

    def _advertised_host(self) -> str:
        """The host other sidecars use to reach this one."""
        host = self.options.internal_addresses[0]
        if host in ("0.0.0.0", "::", ""):
            return os.environ.get("DAPR_HOST_IP") or "127.0.0.1"
        return host

    async def _start_external(self, endpoints: list[Resource]) -> None:
        """HTTPEndpoint resources (their secret headers read now) and the external client."""
        self.invoke.endpoints = await load_endpoints(endpoints, self._endpoint_secret)
        external = ExternalCaller()
        await external.start()
        self._stack.push_async_callback(external.close)
        self.invoke.external = external

    async def _endpoint_secret(self, store: str, name: str) -> dict[str, str]:
        if not store:
            stores = self.components.of_category("secretstores")
            if len(stores) != 1:
                raise LookupError("name the secret store in auth.secretStore")
            store = stores[0].name
        return await self.secrets.get(store, name, {})

    def access_allowed(self, caller: Caller, method: str, verb: str) -> bool:
        """``spec.accessControl`` for a call delivered to this sidecar's app."""
        acl = self.secrets.configuration.access_control
        identity = (
            Identity(caller.trust_domain or DEFAULT_TRUST_DOMAIN, caller.namespace, caller.app_id)
            if caller.verified
            else None
        )
        is_grpc_app = self.options.app_protocol in ("grpc", "grpcs")
        return acl.allows(identity, method, verb, check_verb=not is_grpc_app)

    async def _start_mtls(self) -> None:
        opts = self.options
        config = self.secrets.configuration
        self.invoke.me = Caller(opts.app_id, opts.namespace, trust_domain_of(config), verified=True)
        identity = await open_identity(opts, config)
        if identity is None:
            return
        self._stack.push_async_callback(identity.close)
        self.identity = identity
        self.internal_client = InternalClient(opts.max_body_size, identity.client_context)

    async def _start_name_resolution(self) -> None:
        """Start-up step 5: open the resolver and record this sidecar in the run folder."""
        assert self.ports is not None
        opts = self.options
        host = self._advertised_host()
        me = SelfInfo(
            opts.app_id,
            opts.namespace,
            host,
            self.ports.internal,
            self.ports.grpc,
            self.ports.http,
            self.ports.proxy,
        )
        resolver = await open_resolver(self.secrets.configuration.name_resolution, me)
        self._stack.push_async_callback(resolver.close)
        self.invoke.resolver = resolver
        self.invoke.remote = self.internal_client
        self.instance = runfolder.Instance(
            app_id=opts.app_id,
            namespace=opts.namespace,
            host=host,
            http_port=self.ports.http,
            grpc_port=self.ports.grpc,
            internal_port=self.ports.internal,
            proxy_port=self.ports.proxy,
            pid=os.getpid(),
            started_at=runfolder.now(),
            app_port=opts.app_port,
            app_protocol=opts.app_protocol,
            run_file=opts.run_file,
        )
        try:
            self._record = runfolder.register(self.instance)
        except OSError as exc:
            log.warning("cannot record this sidecar in the run folder: %s", exc)
            return
        record = self._record
        self._stack.callback(runfolder.unregister, record)

    def record_app(self, pid: int, command: str, app_dir: str = "") -> None:
        """Add the app's process to this sidecar's run-folder record (for `daprlite list`)."""
        if self.instance is None or self._record is None:
            return
        try:
            self.instance = runfolder.update(
                self._record, self.instance, app_pid=pid, command=command, app_dir=app_dir
            )
        except OSError as exc:
            log.warning("cannot update this sidecar's run-folder record: %s", exc)

    async def _wait_for_app(self, port: int) -> None:
        host = self.options.app_channel_address
        log.info("waiting for the app on %s:%d", host, port)
        while True:
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        log.info("app is listening on port %d", port)
        self.input_bindings = await start_input_bindings(
            self.components, self.app_channel, self.bindings
        )
        self.subscriptions = await start_subscriptions(
            self._declared_subscriptions,
            self.app_channel,
            self.pubsub,
            self.resiliency,
            self.options.app_id,
            self._stack,
        )
        self._mark_ready()

    def _mark_ready(self) -> None:
        self.health.ready = True
        log.info("daprlite sidecar is ready (app id %s)", self.options.app_id)

    # -- stop -----------------------------------------------------------------------------
    def request_shutdown(self) -> None:
        """Ask for a graceful shutdown (the API's /shutdown, or a signal)."""
        self._shutdown.set()

    async def wait_for_shutdown(self) -> None:
        await self._shutdown.wait()

    async def stop(self) -> None:
        self.health.ready = False
        self.health.outbound_ready = False
        await self._stack.aclose()
        log.info("daprlite sidecar stopped")

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
