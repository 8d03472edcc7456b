"""The metadata and health block: what this sidecar is and whether it is ready.

Both transports render :class:`MetadataSnapshot` (HTTP as Dapr's JSON, gRPC as
``GetMetadataResponse``). Component properties are never exposed here: they
may hold secrets (D7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from daprlite import DAPR_RUNTIME_VERSION, __version__
from daprlite.blocks.pubsub.subscriptions import Subscription
from daprlite.components.bindings.api import Capability, InputBinding, OutputBinding
from daprlite.components.state.api import Feature
from daprlite.config.options import AppHealthOptions
from daprlite.runtime.registry import ComponentStore, LiveComponent


@dataclass(frozen=True, slots=True)
class ComponentInfo:
    name: str
    type: str
    version: str
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppConnection:
    port: int
    protocol: str
    channel_address: str
    max_concurrency: int
    health: AppHealthOptions | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """One running subscription as the metadata API lists it."""

    pubsub: str
    topic: str
    metadata: Mapping[str, str]
    rules: tuple[tuple[str, str], ...]  # (match, path); the default route has match ""
    dead_letter_topic: str
    type: str  # DECLARATIVE, PROGRAMMATIC or STREAMING


def subscription_info(sub: Subscription) -> SubscriptionInfo:
    rules = [(r.rule.text, r.path) for r in sub.routes]
    if sub.default_path:
        rules.append(("", sub.default_path))
    return SubscriptionInfo(
        sub.pubsub, sub.topic, dict(sub.metadata), tuple(rules), sub.dead_letter_topic, sub.kind
    )


def _no_subscriptions() -> Sequence[Subscription]:
    return ()


def go_duration(seconds: float) -> str:
    """A duration as Go prints it in Dapr's metadata ("5s", "500ms", "1.5s")."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class MetadataSnapshot:
    id: str
    runtime_version: str
    components: tuple[ComponentInfo, ...]
    extended: Mapping[str, str]
    app_connection: AppConnection | None
    enabled_features: tuple[str, ...] = ()
    resiliencies: tuple[str, ...] = ()
    subscriptions: tuple[SubscriptionInfo, ...] = ()


def capabilities_of(component: LiveComponent) -> tuple[str, ...]:
    """Dapr's capability strings: a store's features (+ACTOR), a binding's directions."""
    if component.category == "bindings":
        caps = []
        if isinstance(component.instance, InputBinding):
            caps.append(Capability.INPUT_BINDING.value)
        if isinstance(component.instance, OutputBinding):
            caps.append(Capability.OUTPUT_BINDING.value)
        return tuple(caps)
    features_fn = getattr(component.instance, "features", None)
    feats = sorted(str(f) for f in features_fn()) if callable(features_fn) else []
    if component.category == "state" and Feature.ETAG in feats and Feature.TRANSACTIONAL in feats:
        feats.append("ACTOR")
    return tuple(feats)


@dataclass(slots=True)
class Health:
    """Readiness flags, flipped by the lifecycle as start-up progresses."""

    outbound_ready: bool = False  # components loaded and API listeners up
    ready: bool = False  # ...and the app is reachable (when it has a port)


@dataclass(slots=True)
class MetadataAPI:
    app_id: str
    components: ComponentStore
    app_connection: AppConnection | None = None
    resiliencies: tuple[str, ...] = ()
    extended: dict[str, str] = field(default_factory=dict)
    # The running subscriptions (started ones and open streams), read per snapshot.
    subscriptions: Callable[[], Sequence[Subscription]] = _no_subscriptions

    def snapshot(self) -> MetadataSnapshot:
        comps = tuple(
            ComponentInfo(c.name, c.type, c.version, capabilities_of(c)) for c in self.components
        )
        ext = {**self.extended, "daprRuntimeVersion": DAPR_RUNTIME_VERSION}
        ext.setdefault("daprliteVersion", __version__)
        return MetadataSnapshot(
            id=self.app_id,
            runtime_version=DAPR_RUNTIME_VERSION,
            components=comps,
            extended=ext,
            app_connection=self.app_connection,
            resiliencies=self.resiliencies,
            subscriptions=tuple(subscription_info(s) for s in self.subscriptions()),
        )

    def set(self, key: str, value: str) -> None:
        """Store one extended attribute; an empty key is a no-op, as in Dapr."""
        if key:
            self.extended[key] = value
