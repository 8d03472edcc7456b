"""The component registry: ``"kind.name"`` (+ version) -> component class.

One explicit table, imported lazily so that a missing optional driver only
matters when a manifest asks for that component. Third-party components
register through the ``daprlite.components`` entry-point group, with entry
point names of the form ``state.mystore`` or ``state.mystore/v2``.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

from daprlite.components.errors import ComponentError, MissingDriverError

ENTRY_POINT_GROUP = "daprlite.components"

# Versions that all mean "the first version" (Dapr accepts all three).
_INITIAL_VERSIONS = ("", "v0", "v1")


@dataclass(frozen=True, slots=True)
class Registration:
    """Where a component class lives and which extra provides its driver."""

    target: str  # "module:Class"
    driver: str = ""  # top-level module of the optional driver, if any
    extra: str = ""  # the pip extra that installs it


_S = "daprlite.components.state"
_N = "daprlite.components.nameresolution"

# (type, version) -> registration. Aliases are plain extra rows.
BUILTIN: dict[tuple[str, str], Registration] = {
    ("state.in-memory", "v1"): Registration(f"{_S}.inmemory:InMemoryStateStore"),
    ("state.sqlite", "v1"): Registration(f"{_S}.sqlite:SQLiteStateStore"),
    ("state.sqlite3", "v1"): Registration(f"{_S}.sqlite:SQLiteStateStore"),
    ("state.redis", "v1"): Registration(f"{_S}.redis:RedisStateStore", "redis", "redis"),
    ("state.postgresql", "v1"): Registration(
        f"{_S}.postgresql:PostgreSQLStateStore", "asyncpg", "postgresql"
    ),
    ("state.postgres", "v1"): Registration(
        f"{_S}.postgresql:PostgreSQLStateStore", "asyncpg", "postgresql"
    ),
    ("bindings.http", "v1"): Registration("daprlite.components.bindings.http:HTTPBinding"),
    ("bindings.localstorage", "v1"): Registration(
        "daprlite.components.bindings.localstorage:LocalStorageBinding"
    ),
    ("bindings.mqtt3", "v1"): Registration(
        "daprlite.components.bindings.mqtt3:MQTTBinding", "aiomqtt", "mqtt"
    ),
    ("bindings.mqtt", "v1"): Registration(
        "daprlite.components.bindings.mqtt3:MQTTBinding", "aiomqtt", "mqtt"
    ),
    ("bindings.rabbitmq", "v1"): Registration(
        "daprlite.components.bindings.rabbitmq:RabbitMQBinding", "aio_pika", "rabbitmq"
    ),
    ("bindings.redis", "v1"): Registration(
        "daprlite.components.bindings.redis:RedisBinding", "redis", "redis"
    ),
    ("bindings.postgresql", "v1"): Registration(
        "daprlite.components.bindings.postgresql:PostgreSQLBinding", "asyncpg", "postgresql"
    ),
    ("bindings.postgres", "v1"): Registration(
        "daprlite.components.bindings.postgresql:PostgreSQLBinding", "asyncpg", "postgresql"
    ),
    ("bindings.cron", "v1"): Registration("daprlite.components.bindings.cron:CronBinding"),
    ("pubsub.in-memory", "v1"): Registration("daprlite.components.pubsub.inmemory:InMemoryPubSub"),
    ("pubsub.sqlite", "v1"): Registration("daprlite.components.pubsub.sqlite:SQLitePubSub"),
    ("pubsub.redis", "v1"): Registration(
        "daprlite.components.pubsub.redis:RedisStreamsPubSub", "redis", "redis"
    ),
    ("pubsub.jetstream", "v1"): Registration(
        "daprlite.components.pubsub.jetstream:JetStreamPubSub", "nats", "nats"
    ),
    ("pubsub.rabbitmq", "v1"): Registration(
        "daprlite.components.pubsub.rabbitmq:RabbitMQPubSub", "aio_pika", "rabbitmq"
    ),
    ("pubsub.mqtt3", "v1"): Registration(
        "daprlite.components.pubsub.mqtt3:MQTTPubSub", "aiomqtt", "mqtt"
    ),
    ("pubsub.mqtt", "v1"): Registration(
        "daprlite.components.pubsub.mqtt3:MQTTPubSub", "aiomqtt", "mqtt"
    ),
    ("secretstores.local.file", "v1"): Registration(
        "daprlite.components.secretstores.localfile:LocalFileSecretStore"
    ),
    ("secretstores.local.env", "v1"): Registration(
        "daprlite.components.secretstores.localenv:LocalEnvSecretStore"
    ),
    ("secretstores.kubernetes", "v1"): Registration(
        "daprlite.components.secretstores.kubernetes:KubernetesSecretStore",
        "kubernetes_asyncio",
        "kubernetes",
    ),
    ("middleware.http.ratelimit", "v1"): Registration(
        "daprlite.components.middleware.ratelimit:RateLimitMiddleware"
    ),
    ("auth.jwt", "v1"): Registration("daprlite.components.auth.jwt:JWTValidator"),
    ("auth.sessions", "v1"): Registration("daprlite.components.auth.sessions:StateSessionStore"),
    ("middleware.http.bearer", "v1"): Registration(
        "daprlite.components.middleware.bearer:BearerMiddleware"
    ),
    ("nameresolution.standalone", "v1"): Registration(f"{_N}.standalone:StandaloneResolver"),
    # Dapr's laptop default: Configurations that name it keep working on the run folder.
    ("nameresolution.mdns", "v1"): Registration(f"{_N}.standalone:StandaloneResolver"),
    ("nameresolution.static", "v1"): Registration(f"{_N}.static:StaticResolver"),
    # aiodns is imported by the class itself, and only when `nameservers` is set.
    ("nameresolution.kubernetes", "v1"): Registration(
        f"{_N}.kubernetes:KubernetesResolver", "aiodns", "kubernetes"
    ),
}


class UnknownComponentError(ComponentError):
    """No component is registered under the requested type and version."""


def _normalise_version(version: str) -> str:
    v = (version or "").strip().lower()
    return "v1" if v in _INITIAL_VERSIONS else v


class Registry:
    """Resolves component types to classes; built-ins first, then entry points."""

    def __init__(self, table: dict[tuple[str, str], Registration] | None = None) -> None:
        self._table = dict(BUILTIN if table is None else table)
        self._loaded_entry_points = False

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in importlib_metadata.entry_points(group=ENTRY_POINT_GROUP):
            ctype, _, version = ep.name.partition("/")
            key = (ctype.strip(), _normalise_version(version))
            self._table.setdefault(key, Registration(ep.value))

    def known_types(self) -> list[str]:
        self._load_entry_points()
        return sorted({t for t, _ in self._table})

    def resolve(self, component_type: str, version: str = "v1") -> type:
        """The class for ``component_type``/``version``; raises a helpful error if unknown."""
        self._load_entry_points()
        ver = _normalise_version(version)
        reg = self._table.get((component_type, ver))
        if reg is None:
            versions = sorted(v for t, v in self._table if t == component_type)
            if versions:
                raise UnknownComponentError(
                    f"component type {component_type!r} has no version {version!r}; "
                    f"known versions: {', '.join(versions)}"
                )
            close = difflib.get_close_matches(component_type, self.known_types(), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownComponentError(f"unknown component type {component_type!r}{hint}")
        module_name, _, class_name = reg.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if reg.driver and exc.name and exc.name.split(".")[0] == reg.driver:
                raise MissingDriverError(component_type, reg.driver, reg.extra) from exc
            raise
        cls: type = getattr(module, class_name)
        return cls

    def category(self, component_type: str) -> str:
        """``state`` for ``state.redis``; ``middleware.http`` for middleware."""
        if component_type.startswith("middleware.http."):
            return "middleware.http"
        return component_type.split(".", 1)[0]
