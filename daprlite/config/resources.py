"""Dapr-format resource manifests: models and the YAML loader.

Start-up step 2 (see DESIGN.md, Lifecycle): read every ``--resources-path``
folder (non-recursively, ``*.yaml``/``*.yml``, multi-document files), keep the
kinds we know — Component, Configuration, Resiliency, Subscription, HTTPEndpoint — and turn
each into a frozen model. Every problem is a :class:`ResourceError` naming the
file, the resource and the field, unless the component says ``ignoreErrors``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from daprlite.components.metadata import parse_duration

log = logging.getLogger("daprlite.config")

KNOWN_KINDS = {
    "Component": ("dapr.io/v1alpha1",),
    "Configuration": ("dapr.io/v1alpha1",),
    "Resiliency": ("dapr.io/v1alpha1",),
    "Subscription": ("dapr.io/v1alpha1", "dapr.io/v2alpha1"),
    "HTTPEndpoint": ("dapr.io/v1alpha1",),
}
# metadata.name must be usable as one URL path segment.
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")


class ResourceError(Exception):
    """A manifest is invalid. The message names the file, the resource and the field."""

    def __init__(self, source: str, resource: str, field_name: str, problem: str) -> None:
        where = f"{source}: {resource}" if resource else source
        if field_name:
            where += f": field {field_name!r}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.resource = resource
        self.field = field_name


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class MetadataItem:
    """One ``spec.metadata`` entry: a plain value, a secret reference, or an env reference."""

    name: str
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = None
    env_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    type: str
    version: str
    metadata: tuple[MetadataItem, ...]
    source: str  # file the manifest came from, for error messages
    namespace: str = ""
    init_timeout: float = 5.0
    ignore_errors: bool = False
    secret_store: str = ""  # auth.secretStore
    scopes: tuple[str, ...] = ()

    @property
    def category(self) -> str:
        return self.type.split(".", 1)[0]

    @property
    def label(self) -> str:
        return f"Component {self.name!r} ({self.type})"


@dataclass(frozen=True, slots=True)
class Resource:
    """A Configuration, Resiliency or Subscription, kept as its spec for its own block."""

    kind: str
    name: str
    api_version: str
    spec: Mapping[str, object]
    source: str
    namespace: str = ""
    scopes: tuple[str, ...] = ()


@dataclass(slots=True)
class Resources:
    components: list[Component] = field(default_factory=list)
    configurations: list[Resource] = field(default_factory=list)
    resiliencies: list[Resource] = field(default_factory=list)
    subscriptions: list[Resource] = field(default_factory=list)
    http_endpoints: list[Resource] = field(default_factory=list)


def _scalar(value: object) -> str:
    """Stringify a YAML scalar the way Dapr does (booleans lower-case, no quotes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return str(value)


def _require_mapping(obj: object, source: str, resource: str, fname: str) -> Mapping[str, object]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise ResourceError(
            source, resource, fname, f"expected a mapping, got {type(obj).__name__}"
        )
    return obj


def _scopes(doc: Mapping[str, object], source: str, label: str) -> tuple[str, ...]:
    raw = doc.get("scopes") or []
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        raise ResourceError(source, label, "scopes", "expected a list of app ids")
    return tuple(raw)


def _metadata_items(raw: object, source: str, label: str) -> tuple[MetadataItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ResourceError(source, label, "spec.metadata", "expected a list of {name, value}")
    items: list[MetadataItem] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"spec.metadata[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ResourceError(source, label, where, "expected a mapping with a 'name'")
        name = entry["name"]
        if name.lower() in seen:
            raise ResourceError(source, label, f"{where}.name", f"duplicate metadata name {name!r}")
        seen.add(name.lower())
        ref = entry.get("secretKeyRef")
        if ref is not None:
            if not isinstance(ref, Mapping) or not ref.get("name"):
                raise ResourceError(
                    source, label, f"{where}.secretKeyRef", "expected {name, key} of a secret"
                )
            key = str(ref.get("key") or ref["name"])
            items.append(MetadataItem(name, secret_key_ref=SecretKeyRef(str(ref["name"]), key)))
        elif entry.get("envRef") is not None:
            items.append(MetadataItem(name, env_ref=str(entry["envRef"])))
        else:
            items.append(MetadataItem(name, value=_scalar(entry.get("value"))))
    return tuple(items)


def parse_component(doc: Mapping[str, object], source: str) -> Component:
    meta = _require_mapping(doc.get("metadata"), source, "Component", "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ResourceError(source, "Component", "metadata.name", "is required")
    label = f"Component {name!r}"
    if not _NAME.match(name):
        raise ResourceError(
            source, label, "metadata.name", "must be letters, digits, '.', '_' or '-'"
        )
    spec = _require_mapping(doc.get("spec"), source, label, "spec")
    ctype = spec.get("type")
    if not isinstance(ctype, str) or "." not in ctype:
        raise ResourceError(
            source, label, "spec.type", "is required, as '<category>.<name>' (e.g. state.redis)"
        )
    timeout = 5.0
    if spec.get("initTimeout") not in (None, ""):
        try:
            timeout = parse_duration(str(spec["initTimeout"]))
        except ValueError as exc:
            raise ResourceError(source, label, "spec.initTimeout", str(exc)) from exc
    ignore = spec.get("ignoreErrors", False)
    if not isinstance(ignore, bool):
        ignore = str(ignore).lower() == "true"
    auth = _require_mapping(doc.get("auth"), source, label, "auth")
    return Component(
        name=name,
        type=ctype,
        version=_scalar(spec.get("version")) or "v1",
        metadata=_metadata_items(spec.get("metadata"), source, label),
        source=source,
        namespace=str(meta.get("namespace") or ""),
        init_timeout=timeout,
        ignore_errors=ignore,
        secret_store=str(auth.get("secretStore") or ""),
        scopes=_scopes(doc, source, label),
    )


def parse_resource(kind: str, doc: Mapping[str, object], source: str) -> Resource:
    """A Configuration, Resiliency, Subscription or HTTPEndpoint document as a model."""
    meta = _require_mapping(doc.get("metadata"), source, kind, "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ResourceError(source, kind, "metadata.name", "is required")
    label = f"{kind} {name!r}"
    spec = _require_mapping(doc.get("spec"), source, label, "spec")
    return Resource(
        kind=kind,
        name=name,
        api_version=str(doc.get("apiVersion")),
        spec=spec,
        source=source,
        namespace=str(meta.get("namespace") or ""),
        scopes=_scopes(doc, source, label),
    )


def _documents(path: Path, expand_env: bool) -> Iterable[tuple[int, object]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResourceError(str(path), "", "", f"cannot read file: {exc}") from exc
    if expand_env:
        text = os.path.expandvars(text)
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ResourceError(str(path), "", "", f"invalid YAML{at}: {problem}") from exc
    return ((i, d) for i, d in enumerate(docs) if d is not None)


class ResourceLoader:
    """Reads resource folders and config files into :class:`Resources`."""

    def __init__(self, app_id: str, namespace: str = "") -> None:
        self.app_id = app_id
        self.namespace = namespace

    def _in_scope(self, scopes: tuple[str, ...], namespace: str, label: str) -> bool:
        if self.namespace and namespace and namespace != self.namespace:
            log.debug("skipping %s: namespace %s is not %s", label, namespace, self.namespace)
            return False
        if scopes and self.app_id not in scopes:
            log.debug("skipping %s: app %s is not in its scopes", label, self.app_id)
            return False
        return True

    def load_file(self, path: Path, into: Resources, expand_env: bool = False) -> None:
        for index, doc in _documents(path, expand_env):
            source = f"{path} (document {index + 1})" if index else str(path)
            if not isinstance(doc, Mapping):
                raise ResourceError(source, "", "", "expected a YAML mapping (a resource)")
            kind, api = doc.get("kind"), doc.get("apiVersion")
            if kind not in KNOWN_KINDS or api not in KNOWN_KINDS[str(kind)]:
                log.debug(
                    "ignoring %s: kind %r apiVersion %r is not one we load", source, kind, api
                )
                continue
            if kind == "Component":
                comp = self._component_or_none(doc, source)
                if comp and self._in_scope(comp.scopes, comp.namespace, comp.label):
                    into.components.append(comp)
                continue
            res = parse_resource(str(kind), doc, source)
            if self._in_scope(res.scopes, res.namespace, f"{kind} {res.name!r}"):
                {
                    "Configuration": into.configurations,
                    "Resiliency": into.resiliencies,
                    "Subscription": into.subscriptions,
                    "HTTPEndpoint": into.http_endpoints,
                }[str(kind)].append(res)

    def _component_or_none(self, doc: Mapping[str, object], source: str) -> Component | None:
        try:
            return parse_component(doc, source)
        except ResourceError:
            spec = doc.get("spec")
            if isinstance(spec, Mapping) and str(spec.get("ignoreErrors", "")).lower() == "true":
                log.warning("ignoring invalid component in %s (ignoreErrors is set)", source)
                return None
            raise

    def load(self, folders: Iterable[Path], config_files: Iterable[Path] = ()) -> Resources:
        out = Resources()
        for folder in folders:
            if not folder.is_dir():
                raise ResourceError(str(folder), "", "", "resources path is not a directory")
            for path in sorted(folder.iterdir()):
                if path.suffix in (".yaml", ".yml") and path.is_file():
                    self.load_file(path, out)
        for cfg in config_files:
            if not cfg.is_file():
                raise ResourceError(str(cfg), "", "", "config file not found")
            self.load_file(cfg, out, expand_env=True)
        _reject_duplicates(out)
        return out


def _reject_duplicates(res: Resources) -> None:
    for items in (res.components, res.resiliencies, res.subscriptions, res.http_endpoints):
        seen: dict[str, str] = {}
        for item in items:
            if item.name in seen:
                raise ResourceError(
                    item.source,
                    f"{getattr(item, 'kind', 'Component')} {item.name!r}",
                    "metadata.name",
                    f"duplicate name; already defined in {seen[item.name]}",
                )
            seen[item.name] = item.source
