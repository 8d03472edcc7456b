"""Which policy applies to a call: resolving targets, defaults and built-ins.

The runtime builds one :class:`Resiliency` at start-up from the Resiliency
resources; service invocation asks it for ``app(app_id)``, the state, pub/sub,
bindings and secrets blocks for ``component_outbound``/``component_inbound``,
and the runtime for the built-in retries. Each answer is a ``Policy``.

Resolution follows Dapr (``pkg/resiliency``):

1. A target named under ``spec.targets`` uses exactly the policies it names.
   A kind it leaves out (say, no ``timeout``) is *not* filled from the
   defaults. For components each direction counts separately: a component
   with only an ``outbound`` entry still gets default inbound policies.
2. Otherwise each kind — timeout, retry, circuit breaker — is looked up on its
   own among the reserved names, most specific first, for example for a state
   store: ``DefaultStatestoreComponentOutboundRetryPolicy``,
   ``DefaultComponentOutboundRetryPolicy``, ``DefaultComponentRetryPolicy``,
   ``DefaultRetryPolicy``.

Built-in retries (``builtin``) are Dapr's fixed policies for sidecar-to-sidecar
calls and initialization; a retry policy of the same name replaces one. Dapr
keeps the built-in service retries for an app unless the app is a named target;
:meth:`Resiliency.has_app_target` tells the caller which case it is in.

Each target keeps one circuit breaker for the life of the sidecar: per app id,
and per component and direction. (Dapr keys app breakers by app and method and
shares one per component across both directions; one per app id is coarser
but keeps an unbounded set of method paths out of memory.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from daprlite.config.resources import Resource
from daprlite.resiliency.breaker import CircuitBreaker
from daprlite.resiliency.policy import Policy
from daprlite.resiliency.retry import RetrySpec
from daprlite.resiliency.spec import ResiliencySpec, TargetPolicies, parse_resources

BUILTIN_RETRIES: Mapping[str, RetrySpec] = {
    # Sidecar-to-sidecar calls that fail before reaching the callee.
    "DaprBuiltInServiceRetries": RetrySpec(
        name="DaprBuiltInServiceRetries", duration=1.0, max_retries=3
    ),
    "DaprBuiltInActorRetries": RetrySpec(
        name="DaprBuiltInActorRetries", duration=1.0, max_retries=3
    ),
    "DaprBuiltInActorReminderRetries": RetrySpec(
        name="DaprBuiltInActorReminderRetries",
        policy="exponential",
        max_interval=60.0,
        max_elapsed=15 * 60.0,
    ),
    # Fetching /dapr/subscribe, /dapr/config and the like from the app: Dapr waits
    # 500 ms, then 750 ms, then 1 s (its maxInterval), and gives up after 10 s.
    "DaprBuiltInInitializationRetries": RetrySpec(
        name="DaprBuiltInInitializationRetries",
        policy="exponential",
        max_interval=1.0,
        max_retries=3,
        max_elapsed=10.0,
    ),
}

_OUTBOUND_KINDS = {
    "statestore": "Statestore",
    "pubsub": "Pubsub",
    "binding": "Binding",
    "secretstore": "Secretstore",
    "configuration": "Configuration",
    "lock": "Lock",
}
_INBOUND_KINDS = ("pubsub", "binding")
# Breakers of apps resolved from defaults are made on demand, one per app id the
# caller names; keep the most recently used ones so made-up ids cannot grow memory.
_MAX_CACHED_POLICIES = 4096


class Resiliency:
    """The sidecar's resiliency policies and the live circuit breakers of its targets."""

    def __init__(self, spec: ResiliencySpec) -> None:
        self._spec = spec
        self._cache: OrderedDict[tuple[str, str], Policy] = OrderedDict()

    @classmethod
    def build(cls, resources: Sequence[Resource]) -> Resiliency:
        """Check and merge the Resiliency resources; raises ``ResourceError``."""
        return cls(parse_resources(resources))

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the loaded Resiliency resources, for the metadata API."""
        return self._spec.names

    def has_app_target(self, app_id: str) -> bool:
        """True when ``spec.targets.apps`` names this app (built-in retries then step aside)."""
        return app_id in self._spec.apps

    def app(self, app_id: str) -> Policy:
        """The caller-side policy for service invocation of ``app_id``."""
        return self._policy(
            ("app", app_id), f"app {app_id!r}", self._spec.apps.get(app_id), ("App",)
        )

    def component_outbound(self, name: str, kind: str) -> Policy:
        """The policy for calls into component ``name`` (state, publish, output binding...)."""
        if kind not in _OUTBOUND_KINDS:
            raise ValueError(f"unknown component kind {kind!r}; expected one of {_OUTBOUND_KINDS}")
        label = _OUTBOUND_KINDS[kind]
        scopes = (f"{label}ComponentOutbound", "ComponentOutbound", "Component")
        return self._policy(
            ("outbound", name),
            f"component {name!r} outbound",
            self._spec.outbound.get(name),
            scopes,
        )

    def component_inbound(self, name: str, kind: str) -> Policy:
        """The policy for deliveries from component ``name`` to the app (messages, events)."""
        if kind not in _INBOUND_KINDS:
            raise ValueError(f"unknown inbound component kind {kind!r}; expected pubsub or binding")
        label = _OUTBOUND_KINDS[kind]
        scopes = (f"{label}ComponentInbound", "ComponentInbound", "Component")
        return self._policy(
            ("inbound", name), f"component {name!r} inbound", self._spec.inbound.get(name), scopes
        )

    def builtin(self, name: str) -> Policy:
        """A built-in retry policy, or the retry policy of the same name that replaces it."""
        key = ("builtin", name)
        if key not in self._cache:
            if name not in BUILTIN_RETRIES:
                raise ValueError(f"unknown built-in policy {name!r}")
            retry = self._spec.retries.get(name, BUILTIN_RETRIES[name])
            self._cache[key] = Policy(name=f"built-in {name}", retry=retry)
        return self._cache[key]

    def _policy(
        self,
        key: tuple[str, str],
        label: str,
        named: TargetPolicies | None,
        scopes: Sequence[str],
    ) -> Policy:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        spec = self._spec
        if named is None:
            named = TargetPolicies(
                timeout=_default(spec.timeouts, "Timeout", scopes),
                retry=_default(spec.retries, "Retry", scopes),
                circuit_breaker=_default(spec.breakers, "CircuitBreaker", scopes),
            )
        template = spec.breakers.get(named.circuit_breaker)
        policy = Policy(
            name=label,
            timeout=spec.timeouts.get(named.timeout) or None,  # 0s means no timeout
            retry=spec.retries.get(named.retry),
            breaker=CircuitBreaker(template, label) if template else None,
        )
        self._cache[key] = policy
        if len(self._cache) > _MAX_CACHED_POLICIES:
            self._cache.popitem(last=False)
        return policy


def _default(pool: Mapping[str, object], kind: str, scopes: Sequence[str]) -> str:
    for scope in (*scopes, ""):
        name = f"Default{scope}{kind}Policy"
        if name in pool:
            return name
    return ""
