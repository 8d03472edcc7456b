"""The parts of a Dapr ``Configuration`` resource that the sidecar acts on.

Loaded from ``--config`` files (and Configuration documents in resources
paths). Later issues add tracing, access control and API lists here; today it
carries secret scopes (``spec.secrets.scopes``) and the choice of name resolver
(``spec.nameResolution``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from daprlite.components.middleware.api import PipelineSpec
from daprlite.config.resources import Resource, ResourceError
from daprlite.observability.metrics import MetricSpec, parse_metric_spec
from daprlite.security.acl import AccessControl, parse_access_control
from daprlite.security.apilists import APILists, parse_api_lists
from daprlite.security.mtls import MTLSSpec, parse_mtls


@dataclass(frozen=True, slots=True)
class SecretScope:
    """Which secrets of one store this app may read (Dapr's evaluation order)."""

    store: str
    default_access: str = "allow"
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()

    def allows(self, key: str) -> bool:
        if self.allowed:
            return key in self.allowed
        if key in self.denied:
            return False
        return self.default_access == "allow"


@dataclass(frozen=True, slots=True)
class NameResolutionSpec:
    """``spec.nameResolution``: which resolver finds other apps' sidecars, and its settings.

    An empty ``component`` means the default (``kubernetes`` in a cluster, else
    ``standalone``); ``configuration`` is the resolver's own free-form block.
    """

    component: str
    version: str = ""
    configuration: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Configuration:
    secret_scopes: Mapping[str, SecretScope] = field(default_factory=dict)
    name_resolution: NameResolutionSpec | None = None
    # spec.tracing.samplingRate: the share of new traces marked sampled ("0" off .. "1" all).
    tracing_sampling_rate: float = 0.0
    # spec.accessControl, spec.api and spec.mtls (a later document replaces each whole).
    access_control: AccessControl = field(default_factory=AccessControl)
    api_lists: APILists = field(default_factory=APILists)
    mtls: MTLSSpec = field(default_factory=MTLSSpec)
    # spec.httpPipeline / spec.appHttpPipeline handlers, in order (blocks/middleware.py runs them).
    http_pipeline: tuple[PipelineSpec, ...] = ()
    app_http_pipeline: tuple[PipelineSpec, ...] = ()
    # spec.metric (alias spec.metrics); a later document replaces an earlier one whole.
    metric: MetricSpec = field(default_factory=MetricSpec)

    def secret_allowed(self, store: str, key: str) -> bool:
        scope = self.secret_scopes.get(store)
        return scope is None or scope.allows(key)


def _str_list(value: object, res: Resource, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResourceError(
            res.source, f"Configuration {res.name!r}", where, "expected a list of names"
        )
    return frozenset(value)


def _secret_scopes(res: Resource) -> dict[str, SecretScope]:
    secrets = res.spec.get("secrets") or {}
    if not isinstance(secrets, Mapping):
        raise ResourceError(
            res.source, f"Configuration {res.name!r}", "spec.secrets", "expected a mapping"
        )
    raw = secrets.get("scopes") or []
    if not isinstance(raw, list):
        raise ResourceError(
            res.source, f"Configuration {res.name!r}", "spec.secrets.scopes", "expected a list"
        )
    out: dict[str, SecretScope] = {}
    for i, entry in enumerate(raw):
        where = f"spec.secrets.scopes[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("storeName"), str):
            raise ResourceError(
                res.source, f"Configuration {res.name!r}", f"{where}.storeName", "is required"
            )
        access = str(entry.get("defaultAccess") or "allow").lower()
        if access not in ("allow", "deny"):
            raise ResourceError(
                res.source,
                f"Configuration {res.name!r}",
                f"{where}.defaultAccess",
                f"must be 'allow' or 'deny', got {entry.get('defaultAccess')!r}",
            )
        out[entry["storeName"]] = SecretScope(
            store=entry["storeName"],
            default_access=access,
            allowed=_str_list(entry.get("allowedSecrets"), res, f"{where}.allowedSecrets"),
            denied=_str_list(entry.get("deniedSecrets"), res, f"{where}.deniedSecrets"),
        )
    return out


def _name_resolution(res: Resource) -> NameResolutionSpec | None:
    raw = res.spec.get("nameResolution")
    if raw is None:
        return None
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, "spec.nameResolution", "expected a mapping")
    values: dict[str, str] = {}
    for key in ("component", "version"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise ResourceError(
                res.source, label, f"spec.nameResolution.{key}", "expected a string"
            )
        values[key] = (value or "").strip()
    configuration = raw.get("configuration")
    if configuration is None:
        configuration = {}
    if not isinstance(configuration, Mapping):
        raise ResourceError(
            res.source, label, "spec.nameResolution.configuration", "expected a mapping"
        )
    return NameResolutionSpec(
        component=values["component"],
        version=values["version"],
        configuration=dict(configuration),
    )


def _sampling_rate(res: Resource) -> float | None:
    tracing = res.spec.get("tracing")
    if tracing is None:
        return None
    if not isinstance(tracing, Mapping):
        raise ResourceError(
            res.source, f"Configuration {res.name!r}", "spec.tracing", "expected a mapping"
        )
    raw = tracing.get("samplingRate")
    if raw is None or raw == "":
        return None
    try:
        rate = float(str(raw))
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ResourceError(
            res.source,
            f"Configuration {res.name!r}",
            "spec.tracing.samplingRate",
            f"expected a number from 0 to 1, got {raw!r}",
        )
    return rate


def _selector(raw: object, res: Resource, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    label = f"Configuration {res.name!r}"
    fields = raw.get("fields") if isinstance(raw, Mapping) else None
    if not isinstance(raw, Mapping) or not isinstance(fields or [], list):
        raise ResourceError(res.source, label, where, "expected {fields: [{field, value}]}")
    out: list[tuple[str, str]] = []
    for i, entry in enumerate(fields or []):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("field"), str):
            raise ResourceError(
                res.source, label, f"{where}.fields[{i}].field", "is required (a string)"
            )
        out.append((entry["field"], str(entry.get("value") or "")))
    return tuple(out)


def _pipeline(res: Resource, key: str) -> tuple[PipelineSpec, ...] | None:
    """``spec.<key>.handlers[]``: middleware components by name and type, in order."""
    raw = res.spec.get(key)
    if raw is None:
        return None
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, f"spec.{key}", "expected a mapping with handlers")
    handlers = raw.get("handlers") or []
    if not isinstance(handlers, list):
        raise ResourceError(
            res.source, label, f"spec.{key}.handlers", "expected a list of {name, type}"
        )
    out: list[PipelineSpec] = []
    for i, entry in enumerate(handlers):
        where = f"spec.{key}.handlers[{i}]"
        if not isinstance(entry, Mapping):
            raise ResourceError(res.source, label, where, "expected a mapping {name, type}")
        name, ctype = entry.get("name"), entry.get("type")
        if not isinstance(name, str) or not name.strip():
            raise ResourceError(
                res.source, label, f"{where}.name", "is required: a middleware component's name"
            )
        if not isinstance(ctype, str) or not ctype.startswith("middleware.http."):
            raise ResourceError(
                res.source,
                label,
                f"{where}.type",
                f"expected a middleware type such as 'middleware.http.ratelimit', got {ctype!r}",
            )
        selector = _selector(entry.get("selector"), res, f"{where}.selector")
        out.append(PipelineSpec(name.strip(), ctype.strip(), selector))
    return tuple(out)


def build_configuration(resources: Iterable[Resource]) -> Configuration:
    """Merge Configuration documents in load order (later ones win per store)."""
    scopes: dict[str, SecretScope] = {}
    name_resolution: NameResolutionSpec | None = None
    sampling = 0.0
    pipelines: dict[str, tuple[PipelineSpec, ...]] = {}
    access_control, api_lists, mtls = AccessControl(), APILists(), MTLSSpec()
    metric = MetricSpec()
    for res in resources:
        metric = parse_metric_spec(res) or metric
        access_control = parse_access_control(res) or access_control
        api_lists = parse_api_lists(res) or api_lists
        mtls = parse_mtls(res) or mtls
        scopes.update(_secret_scopes(res))
        # A later document's nameResolution replaces an earlier one whole.
        name_resolution = _name_resolution(res) or name_resolution
        rate = _sampling_rate(res)
        sampling = sampling if rate is None else rate
        # Like nameResolution, a later document's pipeline replaces an earlier one whole.
        for key in ("httpPipeline", "appHttpPipeline"):
            specs = _pipeline(res, key)
            if specs is not None:
                pipelines[key] = specs
    return Configuration(
        secret_scopes=scopes,
        name_resolution=name_resolution,
        tracing_sampling_rate=sampling,
        http_pipeline=pipelines.get("httpPipeline", ()),
        app_http_pipeline=pipelines.get("appHttpPipeline", ()),
        access_control=access_control,
        api_lists=api_lists,
        mtls=mtls,
        metric=metric,
    )
