"""API allow and deny lists (Configuration ``spec.api``), for both transports.

HTTP: a route the lists exclude is not registered at all, so a call to it
falls through to the fallback route as an unknown path would (dapr-api.md
9.3). gRPC: an interceptor refuses an excluded method with
PERMISSION_DENIED. Denied beats allowed; an empty allow list allows
everything; the health endpoints are always allowed.

Rules name an API (``state``, ``invoke``, ``publish`` ...) and a version,
written either way: ``v1`` or ``v1.0``, ``v1alpha1`` or ``v1.0-alpha1``.
A rule without ``protocol`` applies to HTTP, as in Dapr.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from daprlite.config.resources import Resource, ResourceError

HTTP = "http"
GRPC = "grpc"

# "/v1.0-alpha1/state/..." -> ("v1.0-alpha1", "state")
_HTTP_PATH = re.compile(r"^/(v1\.0(?:-(?:alpha|beta)\d+)?)/([^/{]+)")
_LEGACY_VERSION = re.compile(r"^v(\d+)\.0(?:-((?:alpha|beta)\d+))?$")

# gRPC methods of dapr.proto.runtime.v1.Dapr by API; the version is v1 unless the
# method name ends in Alpha1/Beta1.
_GRPC_APIS: dict[str, str] = {
    "GetState": "state",
    "GetBulkState": "state",
    "SaveState": "state",
    "QueryStateAlpha1": "state",
    "DeleteState": "state",
    "DeleteBulkState": "state",
    "ExecuteStateTransaction": "state",
    "PublishEvent": "publish",
    "BulkPublishEventAlpha1": "publish",
    "BulkPublishEvent": "publish",
    "SubscribeTopicEventsAlpha1": "subscribe",
    "InvokeService": "invoke",
    "InvokeBinding": "bindings",
    "GetSecret": "secrets",
    "GetBulkSecret": "secrets",
    "GetMetadata": "metadata",
    "SetMetadata": "metadata",
    "Shutdown": "shutdown",
}
_ALWAYS_OPEN = frozenset({"healthz"})


def normalise_version(version: str) -> str:
    """``v1.0`` -> ``v1``, ``v1.0-alpha1`` -> ``v1alpha1``; other forms unchanged."""
    m = _LEGACY_VERSION.match(version.strip().lower())
    if m is None:
        return version.strip().lower()
    return f"v{m.group(1)}{m.group(2) or ''}"


@dataclass(frozen=True, slots=True)
class APIRule:
    name: str
    version: str  # normalised
    protocol: str


@dataclass(frozen=True, slots=True)
class APILists:
    """``spec.api``: which APIs this sidecar serves (empty lists: all of them)."""

    allowed: tuple[APIRule, ...] = ()
    denied: tuple[APIRule, ...] = ()

    def allows(self, protocol: str, name: str, version: str) -> bool:
        if name in _ALWAYS_OPEN:
            return True
        version = normalise_version(version)

        def hit(rules: Iterable[APIRule]) -> bool:
            return any(
                r.protocol == protocol and r.name == name and r.version == version for r in rules
            )

        if hit(self.denied):
            return False
        allowed = [r for r in self.allowed if r.protocol == protocol]
        return not allowed or hit(allowed)

    def allows_http_path(self, path: str) -> bool:
        """For a route's path pattern (``/v1.0/state/{name}``): may it be registered?"""
        m = _HTTP_PATH.match(path)
        if m is None:
            return True  # not a Dapr API route (the sidecar's own internals)
        return self.allows(HTTP, m.group(2), m.group(1))

    def allows_grpc_method(self, method: str, proxied: bool) -> bool:
        """For ``/package.Service/Method``; ``proxied`` for gRPC proxying (the invoke API)."""
        if proxied:
            return self.allows(GRPC, "invoke", "v1")
        service, _, name = method.lstrip("/").rpartition("/")
        if service == "dapr.proto.runtime.v1.Dapr":
            api = _GRPC_APIS.get(name)
            if api is None:
                # Methods daprlite does not serve answer UNIMPLEMENTED anyway; with an
                # allow list in force they are simply not allowed.
                return not any(r.protocol == GRPC for r in self.allowed)
            version = "v1"
            for suffix in ("Alpha1", "Beta1"):
                if name.endswith(suffix):
                    version = "v1" + suffix.lower()
            return self.allows(GRPC, api, version)
        if service == "daprlite.runtime.v1.Auth":
            return self.allows(GRPC, "auth", "v1alpha1")
        return True

    @property
    def active(self) -> bool:
        return bool(self.allowed or self.denied)


def _rules(raw: object, res: Resource, where: str) -> tuple[APIRule, ...]:
    label = f"Configuration {res.name!r}"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ResourceError(
            res.source, label, where, "expected a list of {name, version, protocol}"
        )
    out: list[APIRule] = []
    for i, entry in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ResourceError(res.source, label, at, "expected a mapping")
        name, version = entry.get("name"), entry.get("version")
        if not isinstance(name, str) or not name.strip():
            raise ResourceError(res.source, label, f"{at}.name", "is required (e.g. state)")
        if not isinstance(version, str) or not version.strip():
            raise ResourceError(res.source, label, f"{at}.version", "is required (e.g. v1)")
        protocol = str(entry.get("protocol") or HTTP).strip().lower()
        if protocol not in (HTTP, GRPC):
            raise ResourceError(
                res.source,
                label,
                f"{at}.protocol",
                f"must be 'http' or 'grpc', got {entry.get('protocol')!r}",
            )
        out.append(APIRule(name.strip().lower(), normalise_version(version), protocol))
    return tuple(out)


def parse_api_lists(res: Resource) -> APILists | None:
    """``spec.api`` of one Configuration document, or None when absent."""
    raw = res.spec.get("api")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ResourceError(
            res.source, f"Configuration {res.name!r}", "spec.api", "expected a mapping"
        )
    return APILists(
        allowed=_rules(raw.get("allowed"), res, "spec.api.allowed"),
        denied=_rules(raw.get("denied"), res, "spec.api.denied"),
    )
