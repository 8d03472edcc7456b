"""Reading ``kind: Resiliency`` resources into one checked :class:`ResiliencySpec`.

Start-up step 2 loads the resources (``daprlite.config.resources``, already
filtered by scope); ``Resiliency.build`` calls :func:`parse_resources` to merge
every resource's policies and targets. Every problem — an unknown key, a bad
duration, a malformed status list or ``trip`` expression, a target naming a
policy nobody defined, a name defined twice — stops start-up with a
:class:`ResourceError` naming the file, the resource and the field path. (Dapr
logs most of these and carries on without the policy; we refuse, because a
resiliency policy silently missing is found only in an outage.)

Durations are Go durations (``500ms``, ``1m30s``); a bare number is
milliseconds, as Dapr reads it. Policy names and targets are shared by all
resources, so a target may use a policy from another file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from daprlite.components.metadata import parse_duration
from daprlite.config.resources import Resource, ResourceError
from daprlite.resiliency.breaker import BreakerSpec
from daprlite.resiliency.expression import Expression, ExpressionError
from daprlite.resiliency.retry import GRPC_CODE_RANGE, HTTP_STATUS_RANGE, CodeRanges, RetrySpec

log = logging.getLogger("daprlite.resiliency")

BUILTIN_NAMES = (
    "DaprBuiltInServiceRetries",
    "DaprBuiltInActorRetries",
    "DaprBuiltInActorReminderRetries",
    "DaprBuiltInInitializationRetries",
)
# Dapr refuses to let resources replace this one; we do the same.
PROTECTED_BUILTIN = "DaprBuiltInActorNotFoundRetries"
MIN_BUILTIN_RETRIES = 3  # overrides may retry more than the built-ins, never less

# The middle part of the reserved Default<scope><Kind>Policy names.
DEFAULT_SCOPES = frozenset(
    {
        "",
        "App",
        "Actor",
        "Component",
        "ComponentInbound",
        "ComponentOutbound",
        "StatestoreComponentOutbound",
        "PubsubComponentOutbound",
        "PubsubComponentInbound",
        "BindingComponentOutbound",
        "BindingComponentInbound",
        "SecretstoreComponentOutbound",
        "ConfigurationComponentOutbound",
        "LockComponentOutbound",
    }
)
_DEFAULT_NAME = re.compile(r"^Default(\w*?)(Retry|Timeout|CircuitBreaker)Policy$")
_ACTOR_SCOPES = ("id", "type", "both")
_SCOPES_TEXT = "one of " + ", ".join(_ACTOR_SCOPES)


@dataclass(frozen=True, slots=True)
class TargetPolicies:
    """The policy names one target uses; an empty name means none of that kind."""

    timeout: str = ""
    retry: str = ""
    circuit_breaker: str = ""


@dataclass(frozen=True, slots=True)
class ResiliencySpec:
    """All Resiliency resources merged; every policy name a target uses is defined."""

    names: tuple[str, ...] = ()
    timeouts: Mapping[str, float] = field(default_factory=dict)
    retries: Mapping[str, RetrySpec] = field(default_factory=dict)
    breakers: Mapping[str, BreakerSpec] = field(default_factory=dict)
    apps: Mapping[str, TargetPolicies] = field(default_factory=dict)
    actors: Mapping[str, TargetPolicies] = field(default_factory=dict)
    outbound: Mapping[str, TargetPolicies] = field(default_factory=dict)  # components
    inbound: Mapping[str, TargetPolicies] = field(default_factory=dict)  # components


class _Reader:
    """Field access for one resource, raising errors that name the field."""

    def __init__(self, res: Resource) -> None:
        self.res = res
        self.label = f"Resiliency {res.name!r}"

    def error(self, path: str, problem: str) -> ResourceError:
        return ResourceError(self.res.source, self.label, path, problem)

    def mapping(
        self, value: object, path: str, allowed: Sequence[str] | None = None
    ) -> Mapping[str, object]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping, got {type(value).__name__}")
        for key in value:
            if not isinstance(key, str) or not key:
                raise self.error(path, f"expected names as keys, got {key!r}")
            if allowed is not None and key not in allowed:
                raise self.error(
                    f"{path}.{key}", f"unknown field; expected one of: {', '.join(allowed)}"
                )
        return value

    def duration(self, value: object, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, "expected a duration such as '5s' or '500ms'")
        text = str(value).strip()
        try:
            # Dapr reads a bare number as milliseconds.
            seconds = float(text) / 1000 if _is_number(text) else parse_duration(text)
        except ValueError as exc:
            raise self.error(path, str(exc)) from None
        if seconds < 0:
            raise self.error(path, f"{text!r} is negative")
        return seconds

    def integer(self, value: object, path: str, minimum: int) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
            number = int(value)
        if number is None:
            raise self.error(path, f"expected a whole number, got {value!r}")
        if number < minimum:
            raise self.error(path, f"{number} is less than the minimum {minimum}")
        return number

    def name_ref(self, value: object, path: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self.error(path, f"expected a policy name, got {value!r}")
        return value.strip()


def _is_number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def _retry(r: _Reader, name: str, raw: object) -> RetrySpec:
    path = f"spec.policies.retries.{name}"
    if isinstance(raw, Mapping) and "matches" in raw:
        # Some of Dapr's own examples spell it this way; Dapr then ignores the list.
        raise r.error(f"{path}.matches", "unknown field; the key is 'matching'")
    spec = r.mapping(raw, path, ("policy", "duration", "maxInterval", "maxRetries", "matching"))
    kind = r.name_ref(spec.get("policy"), f"{path}.policy").lower() or "constant"
    if kind not in ("constant", "exponential"):
        raise r.error(f"{path}.policy", f"{kind!r} is not 'constant' or 'exponential'")
    retry = RetrySpec(name=name, policy=kind)
    if spec.get("duration") is not None:
        retry = replace(retry, duration=r.duration(spec["duration"], f"{path}.duration"))
    if spec.get("maxInterval") is not None:
        max_interval = r.duration(spec["maxInterval"], f"{path}.maxInterval")
        if max_interval <= 0:
            raise r.error(f"{path}.maxInterval", "must be longer than zero")
        retry = replace(retry, max_interval=max_interval)
    if spec.get("maxRetries") is not None:
        max_retries = r.integer(spec["maxRetries"], f"{path}.maxRetries", minimum=-1)
        retry = replace(retry, max_retries=max_retries)
    where = f"{path}.matching"
    matching = r.mapping(spec.get("matching"), where, ("httpStatusCodes", "gRPCStatusCodes"))
    http = _codes(r, matching.get("httpStatusCodes"), f"{where}.httpStatusCodes", HTTP_STATUS_RANGE)
    grpc = _codes(r, matching.get("gRPCStatusCodes"), f"{where}.gRPCStatusCodes", GRPC_CODE_RANGE)
    return replace(retry, http_statuses=http, grpc_codes=grpc)


def _codes(r: _Reader, text: object, path: str, valid: tuple[int, int]) -> CodeRanges | None:
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)  # a single code written without quotes
    if not isinstance(text, str):
        raise r.error(path, "expected a comma-separated string such as '429,500-504'")
    try:
        return CodeRanges.parse(text, valid)
    except ValueError as exc:
        raise r.error(path, str(exc)) from None


def _breaker(r: _Reader, name: str, raw: object) -> BreakerSpec:
    path = f"spec.policies.circuitBreakers.{name}"
    spec = r.mapping(raw, path, ("maxRequests", "interval", "timeout", "trip"))
    cb = BreakerSpec(name=name)
    if spec.get("maxRequests") is not None:
        # 0 means the default of 1, as in gobreaker.
        max_requests = r.integer(spec["maxRequests"], f"{path}.maxRequests", minimum=0)
        cb = replace(cb, max_requests=max_requests or 1)
    if spec.get("interval") is not None:
        cb = replace(cb, interval=r.duration(spec["interval"], f"{path}.interval"))
    if spec.get("timeout") is not None:
        # 0 means the default of 60 s, as in gobreaker.
        cb = replace(cb, timeout=r.duration(spec["timeout"], f"{path}.timeout") or 60.0)
    trip = spec.get("trip")
    if trip is not None and trip != "":
        if not isinstance(trip, str):
            raise r.error(f"{path}.trip", "expected an expression such as consecutiveFailures > 5")
        try:
            cb = replace(cb, trip=Expression.parse(trip))
        except ExpressionError as exc:
            raise r.error(f"{path}.trip", str(exc)) from None
    return cb


def _target(r: _Reader, raw: object, path: str, extra: Sequence[str] = ()) -> TargetPolicies:
    spec = r.mapping(raw, path, ("timeout", "retry", "circuitBreaker", *extra))
    if "circuitBreakerCacheSize" in spec:
        r.integer(spec["circuitBreakerCacheSize"], f"{path}.circuitBreakerCacheSize", minimum=1)
    return TargetPolicies(
        timeout=r.name_ref(spec.get("timeout"), f"{path}.timeout"),
        retry=r.name_ref(spec.get("retry"), f"{path}.retry"),
        circuit_breaker=r.name_ref(spec.get("circuitBreaker"), f"{path}.circuitBreaker"),
    )


class _Merger:
    """Collects every resource into one spec, remembering who defined each name."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.timeouts: dict[str, float] = {}
        self.retries: dict[str, RetrySpec] = {}
        self.breakers: dict[str, BreakerSpec] = {}
        self.targets: dict[str, dict[str, TargetPolicies]] = {
            "apps": {},
            "actors": {},
            "outbound": {},
            "inbound": {},
        }
        self.owner: dict[tuple[str, str], str] = {}
        # Target references are checked after every resource has been read.
        self.refs: list[tuple[_Reader, str, str, str]] = []  # reader, path, kind, name

    def claim(self, r: _Reader, section: str, name: str, path: str) -> None:
        key = (section, name)
        if key in self.owner:
            raise r.error(path, f"{name!r} is already defined by {self.owner[key]}")
        self.owner[key] = f"{r.label} in {r.res.source}"

    def add(self, res: Resource) -> None:
        if res.kind != "Resiliency":
            raise ValueError(f"{res.kind} {res.name!r} is not a Resiliency resource")
        r = _Reader(res)
        self.names.append(res.name)
        spec = r.mapping(res.spec, "spec", ("policies", "targets"))
        self._policies(r, r.mapping(spec.get("policies"), "spec.policies", _POLICY_KINDS))
        self._targets(
            r, r.mapping(spec.get("targets"), "spec.targets", ("apps", "actors", "components"))
        )

    def _policies(self, r: _Reader, policies: Mapping[str, object]) -> None:
        base = "spec.policies"
        for name, value in r.mapping(policies.get("timeouts"), f"{base}.timeouts").items():
            path = f"{base}.timeouts.{name}"
            self.claim(r, "timeouts", name, path)
            _check_reserved(name, "Timeout", path)
            self.timeouts[name] = r.duration(value, path)
        for name, value in r.mapping(policies.get("retries"), f"{base}.retries").items():
            path = f"{base}.retries.{name}"
            self.claim(r, "retries", name, path)
            _check_reserved(name, "Retry", path)
            if name == PROTECTED_BUILTIN:
                raise r.error(path, f"{name} cannot be overridden")
            retry = _retry(r, name, value)
            if name in BUILTIN_NAMES and 0 <= retry.max_retries < MIN_BUILTIN_RETRIES:
                log.warning(
                    "%s in %s: maxRetries %d is below the built-in minimum; using %d",
                    path,
                    r.label,
                    retry.max_retries,
                    MIN_BUILTIN_RETRIES,
                )
                retry = replace(retry, max_retries=MIN_BUILTIN_RETRIES)
            self.retries[name] = retry
        breakers = r.mapping(policies.get("circuitBreakers"), f"{base}.circuitBreakers")
        for name, value in breakers.items():
            path = f"{base}.circuitBreakers.{name}"
            self.claim(r, "circuitBreakers", name, path)
            _check_reserved(name, "CircuitBreaker", path)
            self.breakers[name] = _breaker(r, name, value)

    def _targets(self, r: _Reader, targets: Mapping[str, object]) -> None:
        base = "spec.targets"
        for app, raw in r.mapping(targets.get("apps"), f"{base}.apps").items():
            path = f"{base}.apps.{app}"
            self.claim(r, "apps", app, path)
            self._keep(r, "apps", app, path, _target(r, raw, path, ("circuitBreakerCacheSize",)))
        for actor, raw in r.mapping(targets.get("actors"), f"{base}.actors").items():
            path = f"{base}.actors.{actor}"
            self.claim(r, "actors", actor, path)
            extra = ("circuitBreakerScope", "circuitBreakerCacheSize")
            target = _target(r, raw, path, extra)
            where = f"{path}.circuitBreakerScope"
            scope = r.name_ref(r.mapping(raw, path).get("circuitBreakerScope"), where)
            if scope and scope not in _ACTOR_SCOPES:
                raise r.error(where, f"{scope!r} is not one of {', '.join(_ACTOR_SCOPES)}")
            if target.circuit_breaker and not scope:
                raise r.error(where, f"an actor circuit breaker needs a scope: {_SCOPES_TEXT}")
            self._keep(r, "actors", actor, path, target)
        for comp, raw in r.mapping(targets.get("components"), f"{base}.components").items():
            path = f"{base}.components.{comp}"
            self.claim(r, "components", comp, path)
            directions = r.mapping(raw, path, ("outbound", "inbound"))
            for direction in ("outbound", "inbound"):
                if directions.get(direction) is not None:
                    where = f"{path}.{direction}"
                    self._keep(r, direction, comp, where, _target(r, directions[direction], where))

    def _keep(self, r: _Reader, group: str, name: str, path: str, t: TargetPolicies) -> None:
        self.targets[group][name] = t
        for kind, ref, key in (
            ("timeouts", t.timeout, "timeout"),
            ("retries", t.retry, "retry"),
            ("circuitBreakers", t.circuit_breaker, "circuitBreaker"),
        ):
            if ref:
                self.refs.append((r, f"{path}.{key}", kind, ref))

    def finish(self) -> ResiliencySpec:
        pools: dict[str, Mapping[str, object]] = {
            "timeouts": self.timeouts,
            "retries": self.retries,
            "circuitBreakers": self.breakers,
        }
        for r, path, kind, ref in self.refs:
            if ref not in pools[kind]:
                known = ", ".join(sorted(pools[kind])) or "none"
                raise r.error(path, f"no {kind} policy named {ref!r} is defined (defined: {known})")
        t = self.targets
        return ResiliencySpec(
            names=tuple(self.names),
            timeouts=dict(self.timeouts),
            retries=dict(self.retries),
            breakers=dict(self.breakers),
            apps=dict(t["apps"]),
            actors=dict(t["actors"]),
            outbound=dict(t["outbound"]),
            inbound=dict(t["inbound"]),
        )


_POLICY_KINDS = ("timeouts", "retries", "circuitBreakers")


def _check_reserved(name: str, kind: str, path: str) -> None:
    """Warn about names that look reserved but will never be picked up as a default."""
    if name in BUILTIN_NAMES and kind != "Retry":
        log.warning("%s: built-in policies can only be overridden by retry policies", path)
    m = _DEFAULT_NAME.match(name)
    if m and (m.group(1) not in DEFAULT_SCOPES or m.group(2) != kind):
        log.warning(
            "%s: %r looks like a reserved default policy name but is not one for this "
            "section; it applies only where a target names it",
            path,
            name,
        )


def parse_resources(resources: Sequence[Resource]) -> ResiliencySpec:
    """Merge and check every Resiliency resource; raises :class:`ResourceError`."""
    merger = _Merger()
    for res in resources:
        merger.add(res)
    return merger.finish()
