"""Subscriptions: what an app subscribes to, from any of the three sources, in one model.

- declarative ``Subscription`` resources (``dapr.io/v1alpha1`` with
  ``spec.route``, ``dapr.io/v2alpha1`` with ``spec.routes``), scoped like components;
- programmatic HTTP (``GET /dapr/subscribe``, v1 and v2 fields mixed);
- programmatic gRPC (``ListTopicSubscriptions``, turned into the same mapping
  by the runtime).

Routing rules compile once here (``rules.compile_rule``); an expression that
cannot be evaluated is a start-up error naming the subscription and the rule,
never a silent mismatch later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from daprlite.blocks.pubsub.rules import Rule, RuleError, compile_rule
from daprlite.config.resources import Resource, ResourceError

DECLARATIVE = "DECLARATIVE"
PROGRAMMATIC = "PROGRAMMATIC"
STREAMING = "STREAMING"


class SubscriptionError(ValueError):
    """A subscription the app (or a file) declared is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class Route:
    rule: Rule
    path: str


@dataclass(frozen=True, slots=True)
class Subscription:
    pubsub: str
    topic: str
    routes: tuple[Route, ...] = ()
    default_path: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""
    kind: str = DECLARATIVE
    bulk: bool = False  # bulkSubscribe.enabled: delivered in batches (runtime/bulk_delivery.py)
    bulk_max_count: int = 100  # bulkSubscribe.maxMessagesCount
    bulk_max_await_ms: int = 1000  # bulkSubscribe.maxAwaitDurationMs

    def path_for(self, event: Mapping[str, object]) -> str | None:
        """The path the event goes to; None when no rule matches and there is no default."""
        for route in self.routes:
            if route.rule.matches(event):
                return route.path
        return self.default_path if self.default_path or not self.routes else None

    @property
    def raw_payload(self) -> bool:
        value = next((v for k, v in self.metadata.items() if k.lower() == "rawpayload"), "")
        return value.strip().lower() in ("true", "1", "yes", "on")


def _rules(raw: object, where: str) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SubscriptionError(f"{where} must be a list of {{match, path}}")
    out: list[Route] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise SubscriptionError(f"{where}[{i}] must be an object {{match, path}}")
        match, path = entry.get("match") or "", entry.get("path") or ""
        if not isinstance(match, str) or not isinstance(path, str):
            raise SubscriptionError(f"{where}[{i}]: match and path must be strings")
        try:
            rule = compile_rule(match)
        except RuleError as exc:
            raise SubscriptionError(f"{where}[{i}].match {match!r}: {exc}") from exc
        out.append(Route(rule, path))
    return tuple(out)


def _metadata(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SubscriptionError(f"{where} must be an object of strings")
    return {str(k): str(v) for k, v in raw.items()}


def _positive(raw: Mapping[str, object], key: str, default: int, where: str) -> int:
    """A bulkSubscribe limit; absent or 0 means Dapr's default."""
    value = raw.get(key)
    if value is None or value == "" or value == 0:
        return default
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SubscriptionError(f"{where}.bulkSubscribe.{key} must be a positive integer")
    return value or default


def from_mapping(raw: Mapping[str, object], where: str, kind: str) -> Subscription | None:
    """One subscription from ``/dapr/subscribe`` or a Subscription spec; None if it has no route.

    Field names are Dapr's: ``pubsubname``, ``topic``, ``route`` (v1),
    ``routes.rules[]`` / ``routes.default`` (v2), ``metadata``,
    ``deadLetterTopic``, ``bulkSubscribe``.
    """
    pubsub, topic = raw.get("pubsubname"), raw.get("topic")
    if not isinstance(pubsub, str) or not pubsub:
        raise SubscriptionError(f"{where}.pubsubname is required")
    if not isinstance(topic, str) or not topic:
        raise SubscriptionError(f"{where}.topic is required")
    routes_raw = raw.get("routes")
    rules: tuple[Route, ...] = ()
    default = ""
    if routes_raw is not None:
        if not isinstance(routes_raw, Mapping):
            raise SubscriptionError(f"{where}.routes must be an object {{rules, default}}")
        rules = _rules(routes_raw.get("rules"), f"{where}.routes.rules")
        default = str(routes_raw.get("default") or "")
    route = raw.get("route")
    if not default and isinstance(route, str):
        default = route
    if not rules and not default:
        return None  # Dapr discards a subscription with nowhere to deliver
    dead_letter = raw.get("deadLetterTopic") or ""
    bulk = raw.get("bulkSubscribe")
    if bulk is not None and not isinstance(bulk, Mapping):
        raise SubscriptionError(f"{where}.bulkSubscribe must be an object")
    bulk = bulk or {}
    return Subscription(
        pubsub=pubsub,
        topic=topic,
        routes=rules,
        default_path=default,
        metadata=_metadata(raw.get("metadata"), f"{where}.metadata"),
        dead_letter_topic=str(dead_letter),
        kind=kind,
        bulk=str(bulk.get("enabled")).strip().lower() == "true",
        bulk_max_count=_positive(bulk, "maxMessagesCount", 100, where),
        bulk_max_await_ms=_positive(bulk, "maxAwaitDurationMs", 1000, where),
    )


def from_resource(res: Resource) -> Subscription | None:
    """A declarative Subscription (v1alpha1 or v2alpha1)."""
    where = f"{res.source}: Subscription {res.name!r}: spec"
    try:
        return from_mapping(res.spec, where, DECLARATIVE)
    except SubscriptionError as exc:
        raise ResourceError(res.source, f"Subscription {res.name!r}", "spec", str(exc)) from exc


def from_http_app(raw: object) -> list[Subscription]:
    """The JSON array an HTTP app returned from ``GET /dapr/subscribe``."""
    if not isinstance(raw, list):
        raise SubscriptionError("GET /dapr/subscribe must answer a JSON array")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise SubscriptionError(f"/dapr/subscribe[{i}] must be an object")
        sub = from_mapping(entry, f"/dapr/subscribe[{i}]", PROGRAMMATIC)
        if sub is not None:
            out.append(sub)
    return out
