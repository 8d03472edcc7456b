"""Prometheus metrics: one registry per sidecar, Dapr's metric and label names.

The sidecar builds one :class:`Metrics` at start-up when metrics are on
(``--enable-metrics`` and the Configuration's ``spec.metric.enabled``) and
hands it to the places that record: the HTTP API middleware, the gRPC API
interceptor, the HTTP app channel, the invocation and pub/sub blocks and the
component processor. Each records through one small method here, so the
names and labels live in one file. ``--metrics-port`` serves
:meth:`Metrics.exposition` (``runtime/servers.py``).

Names and labels are Dapr's, so that dashboards built for Dapr read them.
Dapr exposes several counters without a ``_total`` suffix, which
prometheus_client always adds; :meth:`Metrics.exposition` writes the text
format itself, with each counter under the name it was declared with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.utils import floatToGoString

from daprlite.config.resources import Resource, ResourceError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Dapr's default latency distribution, in milliseconds.
DEFAULT_LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250,
    300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """``spec.metric`` (alias ``spec.metrics``) of the Configuration."""

    enabled: bool = True
    # http.increasedCardinality: the raw request path as the ``path`` label (instead of
    # the route pattern on the server and nothing on the app channel).
    increased_cardinality: bool = False
    # http.excludeVerbs: no HTTP method in the ``method`` label.
    exclude_verbs: bool = False
    latency_buckets_ms: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS_MS


def _flag(raw: object, res: Resource, where: str, default: bool) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ResourceError(
        res.source, f"Configuration {res.name!r}", where, f"expected true or false, got {raw!r}"
    )


def parse_metric_spec(res: Resource) -> MetricSpec | None:
    """``spec.metric`` (or ``spec.metrics``) of one Configuration document; None when absent."""
    key = "metric" if "metric" in res.spec else "metrics"
    raw = res.spec.get(key)
    if raw is None:
        return None
    label = f"Configuration {res.name!r}"
    if not isinstance(raw, Mapping):
        raise ResourceError(res.source, label, f"spec.{key}", "expected a mapping")
    http = raw.get("http")
    http = {} if http is None else http
    if not isinstance(http, Mapping):
        raise ResourceError(res.source, label, f"spec.{key}.http", "expected a mapping")
    buckets = raw.get("latencyDistributionBuckets")
    if buckets is None or buckets == []:
        bounds = DEFAULT_LATENCY_BUCKETS_MS
    else:
        where = f"spec.{key}.latencyDistributionBuckets"
        if not isinstance(buckets, list) or not all(
            isinstance(b, int | float) and not isinstance(b, bool) and b > 0 for b in buckets
        ):
            raise ResourceError(
                res.source, label, where, f"expected a list of positive numbers, got {buckets!r}"
            )
        bounds = tuple(sorted({float(b) for b in buckets}))
    return MetricSpec(
        enabled=_flag(raw.get("enabled"), res, f"spec.{key}.enabled", True),
        increased_cardinality=_flag(
            http.get("increasedCardinality"), res, f"spec.{key}.http.increasedCardinality", False
        ),
        exclude_verbs=_flag(http.get("excludeVerbs"), res, f"spec.{key}.http.excludeVerbs", False),
        latency_buckets_ms=bounds,
    )


class Metrics:
    """The metric objects of one sidecar, in their own registry, and how each is recorded.

    A registry per sidecar (not prometheus_client's global one): tests run
    several sidecars in one process, and each serves only its own numbers.
    """

    def __init__(self, app_id: str, spec: MetricSpec | None = None, namespace: str = "") -> None:
        self.app_id = app_id
        self.namespace = namespace
        self.spec = spec or MetricSpec()
        self.registry = CollectorRegistry(auto_describe=False)
        self._declared: dict[str, str] = {}  # prometheus_client's family name -> exposed name
        buckets = self.spec.latency_buckets_ms
        status = ("app_id", "method", "path", "status")
        self._http_requests = self._counter(
            "dapr_http_server_request_count", "HTTP API requests served", status
        )
        self._http_latency = self._histogram(
            "dapr_http_server_latency", "HTTP API request latency in ms", status, buckets
        )
        grpc = ("app_id", "grpc_server_method", "grpc_server_status")
        self._grpc_completed = self._counter(
            "dapr_grpc_io_server_completed_rpcs", "gRPC API calls completed", grpc
        )
        self._grpc_latency = self._histogram(
            "dapr_grpc_io_server_server_latency", "gRPC API call latency in ms", grpc, buckets
        )
        self._client_completed = self._counter(
            "dapr_http_client_completed_count", "HTTP calls to the app completed", status
        )
        self._client_latency = self._histogram(
            "dapr_http_client_roundtrip_latency",
            "HTTP call to the app latency in ms",
            status,
            buckets,
        )
        dest = ("app_id", "destination_app_id")
        self._invoke_sent = self._counter(
            "dapr_runtime_service_invocation_req_sent_total",
            "service invocation requests sent",
            dest,
        )
        self._invoke_recv = self._counter(
            "dapr_runtime_service_invocation_res_recv_total",
            "service invocation responses received",
            (*dest, "status"),
        )
        self._invoke_latency = self._histogram(
            "dapr_runtime_service_invocation_res_recv_latency_ms",
            "service invocation round trip latency in ms",
            (*dest, "status"),
            buckets,
        )
        topic = ("app_id", "component", "namespace", "topic")
        self._egress = self._counter(
            "dapr_component_pubsub_egress_count",
            "messages published to a pub/sub component",
            (*topic, "success"),
        )
        self._egress_latency = self._histogram(
            "dapr_component_pubsub_egress_latencies",
            "pub/sub component publish latency in ms",
            (*topic, "success"),
            buckets,
        )
        self._ingress = self._counter(
            "dapr_component_pubsub_ingress_count",
            "messages from a pub/sub component delivered to the app",
            (*topic, "process_status"),
        )
        self._ingress_latency = self._histogram(
            "dapr_component_pubsub_ingress_latencies",
            "app processing latency of pub/sub messages in ms",
            (*topic, "process_status"),
            buckets,
        )
        self._loaded = self._counter(
            "dapr_runtime_component_loaded", "components loaded", ("app_id",)
        )
        self._init_total = self._counter(
            "dapr_runtime_component_init_total", "components initialised", ("app_id", "component")
        )
        self._init_failed = self._counter(
            "dapr_runtime_component_init_fail_total",
            "component initialisation failures",
            ("app_id", "component", "reason"),
        )

    def _counter(self, name: str, doc: str, labels: Sequence[str]) -> Counter:
        counter = Counter(name, doc, labels, registry=self.registry)
        self._declared[name.removesuffix("_total")] = name
        return counter

    def _histogram(
        self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

    # -- HTTP labels -----------------------------------------------------------------------
    def http_method(self, method: str) -> str:
        return "" if self.spec.exclude_verbs else method.upper()

    # -- recording -------------------------------------------------------------------------
    def http_server(self, method: str, path: str, status: int, elapsed_ms: float) -> None:
        """One Dapr HTTP API request answered (``path``: the route or, by choice, the path)."""
        labels = (self.app_id, self.http_method(method), path, str(status))
        self._http_requests.labels(*labels).inc()
        self._http_latency.labels(*labels).observe(elapsed_ms)

    def grpc_server(self, method: str, status: str, elapsed_ms: float) -> None:
        """One gRPC API call completed (``method``: ``package.Service/Method``)."""
        self._grpc_completed.labels(self.app_id, method, status).inc()
        self._grpc_latency.labels(self.app_id, method, status).observe(elapsed_ms)

    def http_client(self, method: str, path: str, status: str, elapsed_ms: float) -> None:
        """One HTTP call to the app done (``status``: the HTTP status, or ``error``)."""
        shown = path if self.spec.increased_cardinality else ""
        labels = (self.app_id, self.http_method(method), shown, status)
        self._client_completed.labels(*labels).inc()
        self._client_latency.labels(*labels).observe(elapsed_ms)

    def invocation_sent(self, destination: str) -> None:
        """A service invocation request (one attempt) sent to the app ``destination``."""
        self._invoke_sent.labels(self.app_id, destination).inc()

    def invocation_answered(self, destination: str, status: int, elapsed_ms: float) -> None:
        """The callee's answer arrived (``status``: its HTTP status or gRPC code)."""
        labels = (self.app_id, destination, str(status))
        self._invoke_recv.labels(*labels).inc()
        self._invoke_latency.labels(*labels).observe(elapsed_ms)

    def pubsub_egress(self, component: str, topic: str, success: bool, elapsed_ms: float) -> None:
        """One message published (or not) to a pub/sub component."""
        labels = (self.app_id, component, self.namespace, topic, "true" if success else "false")
        self._egress.labels(*labels).inc()
        self._egress_latency.labels(*labels).observe(elapsed_ms)

    def pubsub_ingress(
        self, component: str, topic: str, process_status: str, elapsed_ms: float
    ) -> None:
        """One delivery of a message to the app (``process_status``: success, retry or drop)."""
        labels = (self.app_id, component, self.namespace, topic, process_status)
        self._ingress.labels(*labels).inc()
        self._ingress_latency.labels(*labels).observe(elapsed_ms)

    def component_loaded(self, component_type: str) -> None:
        self._loaded.labels(self.app_id).inc()
        self._init_total.labels(self.app_id, component_type).inc()

    def component_init_failed(self, component_type: str, reason: str = "init") -> None:
        self._init_failed.labels(self.app_id, component_type, reason).inc()

    # -- exposition ------------------------------------------------------------------------
    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        lines: list[str] = []
        for family in self.registry.collect():
            name = family.name
            if family.type == "counter":
                name = self._declared.get(family.name, family.name + "_total")
            lines.append(f"# HELP {name} {_escape_help(family.documentation)}")
            lines.append(f"# TYPE {name} {family.type}")
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                sample_name = name if family.type == "counter" else sample.name
                lines.append(
                    f"{sample_name}{_labels(sample.labels.items())} {floatToGoString(sample.value)}"
                )
        return ("\n".join(lines) + "\n").encode() if lines else b""


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(pairs))
    return "{" + inner + "}" if inner else ""
