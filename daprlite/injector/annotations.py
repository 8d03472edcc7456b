"""The pod's ``daprlite.io/*`` (or ``dapr.io/*``) annotations, read into a :class:`SidecarSpec`.

First step of an admission request: the webhook hands the pod from the
AdmissionReview to :func:`read_spec`, which checks every annotation it knows
and raises :class:`InjectionError` naming the annotation and its bad value, so
the API server refuses the pod with a message the user can act on. The patch
builder (``injector.patch``) only ever sees a valid spec.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from daprlite.cli.flags import LOG_LEVELS, PROTOCOLS

T = TypeVar("T")

PREFIX = "daprlite.io/"
DAPR_PREFIX = "dapr.io/"
INJECTED_ANNOTATION = "daprlite.io/injected"
NATIVE_SIDECAR_ANNOTATION = "daprlite.io/native-sidecar"

# An app id names the per-app Service ``<app-id>-daprlite``: a DNS label of at most 63 characters.
_APP_ID = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
APP_ID_MAX = 63 - len("-daprlite")
# The trust domain is the host part of a SPIFFE ID: lower case, like a DNS name.
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
TRUST_DOMAIN_MAX = 255
# A Configuration is a Kubernetes object: its name is a DNS subdomain.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Kubernetes' rule for environment variable names.
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Kubernetes resource quantity: a signed decimal, then a binary-SI or decimal-SI suffix or an
# exponent. A resource request is never negative, so the sign may only be '+'.
_QUANTITY = re.compile(r"^\+?(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_QUANTITY_FACTOR = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_TRUE = frozenset({"true", "1", "yes", "y", "on", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "f"})

# Names the injector sets on the sidecar itself; the ``env`` annotation may not override them.
RESERVED_ENV = frozenset(
    {
        "NAMESPACE",
        "POD_NAME",
        "DAPRLITE_SERVICE_ACCOUNT",
        "DAPR_HOST_IP",
        "DAPRLITE_TRUST_DOMAIN",
        "DAPR_TRUST_ANCHORS",
        "DAPRLITE_SENTRY_TOKEN_FILE",
    }
)


class InjectionError(ValueError):
    """A pod the injector refuses: ``field`` (usually an annotation) holds a bad ``value``.

    ``value`` is ``None`` when it must not be repeated (it may hold secrets): the
    message then says only what was expected.
    """

    def __init__(self, field: str, value: str | None, expected: str) -> None:
        super().__init__(
            f"{field}: {expected}" if value is None else f"{field}: {expected}, got {value!r}"
        )
        self.field = field
        self.value = value
        self.expected = expected


@dataclass(frozen=True, slots=True)
class Resources:
    """The sidecar container's CPU and memory requests and limits (Kubernetes quantities)."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None


@dataclass(frozen=True, slots=True)
class SidecarSpec:
    """What the annotations ask of the sidecar; ``None`` means "the sidecar's default"."""

    app_id: str
    app_port: int | None = None
    app_protocol: str | None = None
    config: str | None = None
    log_level: str | None = None
    enable_api_logging: bool = False
    app_max_concurrency: int | None = None
    resources: Resources = Resources()
    env: tuple[tuple[str, str], ...] = ()
    graceful_shutdown_seconds: int | None = None
    native_sidecar: bool | None = None  # None: the injector's default
    # Where the public APIs (HTTP 3500, gRPC 50001) listen; None: loopback only.
    listen_addresses: tuple[str, ...] | None = None
    enable_metrics: bool = True  # enable-metrics: the Prometheus port and scrape annotations
    metrics_port: int | None = None  # metrics-port; None: the injector's default (9090)


class _Annotations:
    """Lookup by bare name: ``daprlite.io/<name>`` wins over ``dapr.io/<name>``."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw

    def get(self, name: str) -> tuple[str, str] | None:
        """``(full key, value)`` of the annotation, or ``None`` when it is absent."""
        for prefix in (PREFIX, DAPR_PREFIX):
            key = prefix + name
            if key in self._raw:
                return key, self._raw[key]
        return None


def annotations_of(pod: Mapping[str, object]) -> dict[str, str]:
    """The pod's annotations (empty when it has none); raises if they are not a string map."""
    metadata = pod.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InjectionError("metadata", type(metadata).__name__, "expected an object")
    raw = metadata.get("annotations")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InjectionError("metadata.annotations", type(raw).__name__, "expected an object")
    for key, value in raw.items():
        # Named by key only: other annotations (such as env) may hold secrets.
        if not isinstance(key, str) or not isinstance(value, str):
            raise InjectionError(
                f"metadata.annotations[{str(key)[:80]!r}]", None, "expected a string value"
            )
    return dict(raw)


def is_enabled(pod: Mapping[str, object]) -> bool:
    """Whether the pod asks for a sidecar (``enabled`` set to a true value)."""
    found = _Annotations(annotations_of(pod)).get("enabled")
    return found is not None and _bool(*found)


def read_spec(pod: Mapping[str, object]) -> SidecarSpec:
    """Check and read every known annotation of ``pod`` (a Pod object as JSON)."""
    ann = _Annotations(annotations_of(pod))
    resources = Resources(
        cpu_request=_opt(ann, "sidecar-cpu-request", _quantity),
        cpu_limit=_opt(ann, "sidecar-cpu-limit", _quantity),
        memory_request=_opt(ann, "sidecar-memory-request", _quantity),
        memory_limit=_opt(ann, "sidecar-memory-limit", _quantity),
    )
    _check_request_within_limit(ann, "cpu")
    _check_request_within_limit(ann, "memory")
    native = None
    raw_native = annotations_of(pod).get(NATIVE_SIDECAR_ANNOTATION)
    if raw_native is not None:
        native = _bool(NATIVE_SIDECAR_ANNOTATION, raw_native)
    api_logging = ann.get("enable-api-logging")
    metrics = ann.get("enable-metrics")
    return SidecarSpec(
        app_id=_app_id(ann, pod),
        app_port=_opt(ann, "app-port", _port),
        app_protocol=_opt(ann, "app-protocol", _protocol),
        config=_opt(ann, "config", _object_name),
        log_level=_opt(ann, "log-level", _log_level),
        enable_api_logging=api_logging is not None and _bool(*api_logging),
        app_max_concurrency=_opt(ann, "app-max-concurrency", _concurrency),
        resources=resources,
        env=_opt(ann, "env", _env) or (),
        graceful_shutdown_seconds=_opt(ann, "graceful-shutdown-seconds", _seconds),
        native_sidecar=native,
        listen_addresses=_opt(ann, "sidecar-listen-addresses", _addresses),
        enable_metrics=metrics is None or _bool(*metrics),
        metrics_port=_opt(ann, "metrics-port", _port),
    )


def default_app_id(pod: Mapping[str, object]) -> str:
    """The owner's name (a Deployment's for a ReplicaSet's pod), else generateName, else name."""
    metadata = pod.get("metadata")
    meta: Mapping[str, object] = metadata if isinstance(metadata, Mapping) else {}
    owner = _controller_owner(meta.get("ownerReferences"))
    if owner is not None:
        kind, owner_name = owner
        labels = meta.get("labels")
        template_hash = labels.get("pod-template-hash") if isinstance(labels, Mapping) else None
        if kind == "ReplicaSet" and isinstance(template_hash, str) and template_hash:
            return owner_name.removesuffix(f"-{template_hash}")
        return owner_name
    generate = meta.get("generateName")
    if isinstance(generate, str) and generate.rstrip("-"):
        return generate.rstrip("-")
    name = meta.get("name")
    return name if isinstance(name, str) else ""


def quantity_value(text: str) -> Decimal:
    """The numeric value of a valid Kubernetes quantity (``500m`` -> 0.5, ``1Ki`` -> 1024)."""
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    suffix = m.group(3) or ""
    number = text[: len(text) - len(suffix)]
    if len(suffix) > 1 and suffix[0] in "eE":
        return Decimal(number) * Decimal(10) ** int(suffix[1:])
    return Decimal(number) * _QUANTITY_FACTOR[suffix]


def _controller_owner(refs: object) -> tuple[str, str] | None:
    if not isinstance(refs, Sequence) or isinstance(refs, str):
        return None
    owners = [r for r in refs if isinstance(r, Mapping) and isinstance(r.get("name"), str)]
    chosen = next((r for r in owners if r.get("controller") is True), None)
    if chosen is None and owners:
        chosen = owners[0]
    if chosen is None:
        return None
    return str(chosen.get("kind", "")), str(chosen["name"])


def _app_id(ann: _Annotations, pod: Mapping[str, object]) -> str:
    found = ann.get("app-id")
    if found is not None:
        key, value = found
        return _valid_app_id(key, value, "")
    derived = default_app_id(pod)
    return _valid_app_id(
        PREFIX + "app-id",
        derived,
        " (it was derived from the pod's owner or name: set the annotation explicitly)",
    )


def is_valid_app_id(value: str) -> bool:
    """Whether ``value`` can be an app id on Kubernetes (a DNS label that leaves room for
    the ``-daprlite`` Service suffix); the sentry applies the same rule."""
    return bool(_APP_ID.match(value)) and len(value) <= APP_ID_MAX


def is_valid_trust_domain(value: str) -> bool:
    """Whether ``value`` can be the trust domain of a SPIFFE ID the sentry issues."""
    return bool(_TRUST_DOMAIN.match(value)) and len(value) <= TRUST_DOMAIN_MAX


def _valid_app_id(key: str, value: str, hint: str) -> str:
    if not _APP_ID.match(value):
        raise InjectionError(
            key, value, f"expected lower-case letters, digits and '-' (a DNS label){hint}"
        )
    if len(value) > APP_ID_MAX:
        raise InjectionError(
            key, value, f"expected at most {APP_ID_MAX} characters (Service '<id>-daprlite'){hint}"
        )
    return value


def _opt(ann: _Annotations, name: str, parse: Callable[[str, str], T]) -> T | None:
    found = ann.get(name)
    return None if found is None else parse(*found)


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InjectionError(key, value, "expected true or false")


def _int(key: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InjectionError(key, value, "expected an integer") from None


def _port(key: str, value: str) -> int:
    port = _int(key, value)
    if not 1 <= port <= 65535:
        raise InjectionError(key, value, "expected a port in 1-65535")
    return port


def _concurrency(key: str, value: str) -> int:
    n = _int(key, value)
    if n < 1 and n != -1:
        raise InjectionError(key, value, "expected a positive integer (or -1: unlimited)")
    return n


def _seconds(key: str, value: str) -> int:
    n = _int(key, value)
    if n < 0:
        raise InjectionError(key, value, "expected a number of seconds >= 0")
    return n


def _protocol(key: str, value: str) -> str:
    if value not in PROTOCOLS:
        raise InjectionError(key, value, f"expected one of {', '.join(PROTOCOLS)}")
    return value


def _log_level(key: str, value: str) -> str:
    if value not in LOG_LEVELS:
        raise InjectionError(key, value, f"expected one of {', '.join(LOG_LEVELS)}")
    return value


def _object_name(key: str, value: str) -> str:
    if not _OBJECT_NAME.match(value) or len(value) > 253:
        raise InjectionError(key, value, "expected the name of a Configuration (a DNS subdomain)")
    return value


def _addresses(key: str, value: str) -> tuple[str, ...]:
    items = [item.strip() for item in value.split(",")]
    if not any(items):
        raise InjectionError(key, value, "expected comma-separated IP addresses")
    out: list[str] = []
    for item in items:
        if not item:
            continue
        try:
            address = ipaddress.ip_address(item)
        except ValueError:
            raise InjectionError(
                key, value, f"expected comma-separated IP addresses; {item[:80]!r} is not one"
            ) from None
        if str(address) not in out:
            out.append(str(address))
    return tuple(out)


def _quantity(key: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise InjectionError(key, value, "expected a Kubernetes quantity such as 100m, 0.5 or 64Mi")
    return value


def _check_request_within_limit(ann: _Annotations, resource: str) -> None:
    request, limit = ann.get(f"sidecar-{resource}-request"), ann.get(f"sidecar-{resource}-limit")
    if request is None or limit is None:
        return
    if quantity_value(request[1]) > quantity_value(limit[1]):
        raise InjectionError(
            request[0], request[1], f"expected at most the limit {limit[0]}={limit[1]!r}"
        )


def _env(key: str, value: str) -> tuple[tuple[str, str], ...]:
    # The values are often tokens or passwords: errors name the item's position or its
    # variable name, never a value (nor a piece of one, which an item without '=' may be).
    pairs: dict[str, str] = {}
    for position, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        name, sep, val = item.partition("=")
        name = name.strip()
        if not sep:
            raise InjectionError(
                key, None, f"expected NAME=value pairs separated by ',': item {position} has no '='"
            )
        if not _ENV_NAME.match(name):
            raise InjectionError(
                key,
                None,
                f"item {position}: expected a variable name of letters, digits, '-', '.' and '_' "
                "(not starting with a digit) before '='",
            )
        if name in RESERVED_ENV:
            raise InjectionError(key, None, f"{name} is set by the injector and cannot be given")
        if name in pairs:
            raise InjectionError(key, None, f"expected each variable once; {name} is repeated")
        pairs[name] = val.strip()
    return tuple(pairs.items())
