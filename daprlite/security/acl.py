"""Service-invocation access control (Configuration ``spec.accessControl``).

Enforced by the callee's sidecar in :class:`daprlite.blocks.invoke.local.LocalApp`,
on the method path exactly as it will be delivered to the app: the path is
decoded and normalised once where the call enters daprlite
(:mod:`daprlite.blocks.invoke.paths`), so ``admin%2F..%2Fpublic`` is checked
and dispatched as the same ``public``.

The caller is identified by the SPIFFE ID of its sidecar's certificate
(``spiffe://<trustDomain>/ns/<namespace>/<appId>``). When no verified identity
exists (mTLS off), only the global default action applies, as in Dapr.
Precedence: an operation (path and verb) match beats the caller policy's
default, which beats the global default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from daprlite.config.resources import Resource, ResourceError

ALLOW = "allow"
DENY = "deny"
DEFAULT_TRUST_DOMAIN = "public"
DEFAULT_NAMESPACE = "default"
_ACTIONS = (ALLOW, DENY)


@dataclass(frozen=True, slots=True)
class Operation:
    """One ``operations[]`` entry: a path pattern (``*`` one segment, ``**`` any depth)."""

    segments: tuple[str, ...]
    verbs: frozenset[str]  # upper-case; {"*"} for any
    action: str

    def matches(self, path: tuple[str, ...], verb: str, check_verb: bool) -> bool:
        if check_verb and "*" not in self.verbs and verb not in self.verbs:
            return False
        return _match(self.segments, path)

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Orders overlapping matches: more literal segments, then fewer ``**``, then longer."""
        literal = sum(1 for s in self.segments if s not in ("*", "**"))
        deep = sum(1 for s in self.segments if s == "**")
        return (literal, -deep, len(self.segments))


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        # Zero or more segments.
        return any(_match(rest, path[i:]) for i in range(len(path) + 1))
    if not path:
        return False
    return (head == "*" or head == path[0]) and _match(rest, path[1:])


@dataclass(frozen=True, slots=True)
class Policy:
    app_id: str
    trust_domain: str
    namespace: str
    default_action: str | None
    operations: tuple[Operation, ...]


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller identity proven by its certificate."""

    trust_domain: str
    namespace: str
    app_id: str


@dataclass(frozen=True, slots=True)
class AccessControl:
    """``spec.accessControl``: the global default and the policies by caller identity."""

    default_action: str = ALLOW
    trust_domain: str = ""  # this app's trust domain, when the Configuration names one
    policies: Mapping[tuple[str, str, str], Policy] | None = None

    def allows(self, caller: Identity | None, method: str, verb: str, check_verb: bool) -> bool:
        """Whether ``caller`` may call ``method`` (normalised, no leading ``/``) with ``verb``.

        ``check_verb`` is false for gRPC apps, whose calls have no HTTP verb.
        """
        if caller is None or not self.policies:
            return self.default_action == ALLOW
        key = (caller.app_id, caller.trust_domain, caller.namespace or DEFAULT_NAMESPACE)
        policy = self.policies.get(key)
        if policy is None:
            return self.default_action == ALLOW
        path = tuple(s for s in method.split("/") if s)
        matched = [op for op in policy.operations if op.matches(path, verb.upper(), check_verb)]
        if matched:
            return max(matched, key=lambda op: op.specificity).action == ALLOW
        return (policy.default_action or self.default_action) == ALLOW


def _action(value: object, res: Resource, where: str) -> str:
    action = str(value).strip().lower() if isinstance(value, str) else ""
    if action not in _ACTIONS:
        raise ResourceError(
            res.source,
            f"Configuration {res.name!r}",
            where,
            f"must be 'allow' or 'deny', got {value!r}",
        )
    return action


def _text(value: object, res: Resource, where: str, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ResourceError(res.source, f"Configuration {res.name!r}", where, "expected a string")
    return value.strip()


def _operation(raw: object, res: Resource, where: str) -> Operation:
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, where, "expected a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip("/ "):
        raise ResourceError(
            res.source, label, f"{where}.name", "is required (a path such as /orders/*)"
        )
    segments = tuple(s for s in name.strip().split("/") if s)
    verbs_raw = raw.get("httpVerb", ["*"])
    if isinstance(verbs_raw, str):
        verbs_raw = [verbs_raw]
    if not isinstance(verbs_raw, list) or not all(isinstance(v, str) for v in verbs_raw):
        raise ResourceError(res.source, label, f"{where}.httpVerb", "expected a list of verbs")
    verbs = frozenset(v.strip().upper() for v in verbs_raw) or frozenset({"*"})
    return Operation(segments, verbs, _action(raw.get("action"), res, f"{where}.action"))


def _policy(raw: object, res: Resource, where: str) -> Policy:
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, where, "expected a mapping")
    app_id = raw.get("appId")
    if not isinstance(app_id, str) or not app_id.strip():
        raise ResourceError(res.source, label, f"{where}.appId", "is required")
    default = raw.get("defaultAction")
    ops_raw = raw.get("operations") or []
    if not isinstance(ops_raw, list):
        raise ResourceError(res.source, label, f"{where}.operations", "expected a list")
    return Policy(
        app_id=app_id.strip(),
        trust_domain=_text(
            raw.get("trustDomain"), res, f"{where}.trustDomain", DEFAULT_TRUST_DOMAIN
        ),
        namespace=_text(raw.get("namespace"), res, f"{where}.namespace", DEFAULT_NAMESPACE),
        default_action=None
        if default in (None, "")
        else _action(default, res, f"{where}.defaultAction"),
        operations=tuple(
            _operation(op, res, f"{where}.operations[{i}]") for i, op in enumerate(ops_raw)
        ),
    )


def parse_access_control(res: Resource) -> AccessControl | None:
    """``spec.accessControl`` of one Configuration document, or None when absent."""
    raw = res.spec.get("accessControl")
    if raw is None:
        return None
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, "spec.accessControl", "expected a mapping")
    policies_raw = raw.get("policies") or []
    if not isinstance(policies_raw, list):
        raise ResourceError(res.source, label, "spec.accessControl.policies", "expected a list")
    policies: dict[tuple[str, str, str], Policy] = {}
    for i, entry in enumerate(policies_raw):
        policy = _policy(entry, res, f"spec.accessControl.policies[{i}]")
        key = (policy.app_id, policy.trust_domain, policy.namespace)
        if key in policies:
            raise ResourceError(
                res.source,
                label,
                f"spec.accessControl.policies[{i}]",
                f"duplicate policy for app {policy.app_id!r} in trust domain "
                f"{policy.trust_domain!r}, namespace {policy.namespace!r}",
            )
        policies[key] = policy
    default = raw.get("defaultAction")
    # Policies without a global default mean "deny everyone else" (Dapr's rule).
    if default in (None, ""):
        default_action = DENY if policies else ALLOW
    else:
        default_action = _action(default, res, "spec.accessControl.defaultAction")
    return AccessControl(
        default_action=default_action,
        trust_domain=_text(raw.get("trustDomain"), res, "spec.accessControl.trustDomain", ""),
        policies=policies,
    )
