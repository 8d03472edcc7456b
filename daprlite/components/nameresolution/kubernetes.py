"""``nameresolution.kubernetes``: a callee's sidecar through cluster DNS.

The default inside a cluster (``KUBERNETES_SERVICE_HOST`` is set). The
injector gives every annotated app a Service ``<app-id>-daprlite`` in its
namespace, so the callee's sidecar is the DNS name
``<app-id>-daprlite.<namespace>.svc.<clusterDomain>``, with the same ports in
every pod. The invocation block calls :meth:`KubernetesResolver.resolve` on
every call and nothing is cached here, so the cluster's DNS (and its TTLs)
decides how fast a moved Service is seen. Names are looked up through the
system resolver, or, when ``nameservers`` is set, straight from those servers
with aiodns (the ``kubernetes`` extra).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daprlite.components.errors import ComponentError, MetadataError, MissingDriverError
from daprlite.components.metadata import setting
from daprlite.components.nameresolution._config import decode_scalars, lookup, reject_unknown
from daprlite.components.nameresolution.api import (
    Address,
    AppNotFoundError,
    ResolveRequest,
    SelfInfo,
)

if TYPE_CHECKING:
    import aiodns

_log = logging.getLogger("daprlite.nameresolution")

COMPONENT_TYPE = "nameresolution.kubernetes"
SERVICE_SUFFIX = "-daprlite"
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Per server try, and tries: a dead nameserver costs a caller a few seconds, not forever.
_DNS_TIMEOUT = 2.0
_DNS_TRIES = 2
# getaddrinfo answers that mean "no such name" rather than "DNS is unwell".
_GAI_NOT_FOUND = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """``spec.nameResolution.configuration`` of ``kubernetes`` (besides ``nameservers``)."""

    clusterDomain: str = setting("cluster.local", doc="The cluster's DNS domain.")
    internalPort: int = setting(
        50002, doc="The port every sidecar serves sidecar-to-sidecar invocation on."
    )
    grpcPort: int = setting(50001, doc="The port of every sidecar's gRPC API (gRPC proxying).")
    proxyPort: int = setting(
        50003, doc="The port every sidecar serves proxied gRPC calls on, over mTLS."
    )

    def __post_init__(self) -> None:
        domain = self.clusterDomain.strip().lower().removesuffix(".")
        if not domain or not all(_LABEL.match(label) for label in domain.split(".")):
            raise MetadataError(
                "clusterDomain", f"expected a DNS domain such as 'cluster.local', got {domain!r}"
            )
        object.__setattr__(self, "clusterDomain", domain)
        if not 1 <= self.internalPort <= 65535:
            raise MetadataError("internalPort", f"expected a port, got {self.internalPort}")
        if not 1 <= self.grpcPort <= 65535:
            raise MetadataError("grpcPort", f"expected a port, got {self.grpcPort}")
        if not 1 <= self.proxyPort <= 65535:
            raise MetadataError("proxyPort", f"expected a port, got {self.proxyPort}")


def _nameserver(field: str, text: str) -> str:
    """``ip``, ``ip:port`` or ``[ipv6]:port`` -> the form c-ares takes; raises naming ``field``."""
    raw = text.strip()
    host, port = raw, ""
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        port = rest.removeprefix(":") if rest.startswith(":") else rest
    elif raw.count(":") == 1:
        host, _, port = raw.partition(":")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port) if port else 53
    except ValueError:
        raise MetadataError(
            field, f"expected an IP address, optionally with :port, got {text!r}"
        ) from None
    if not 1 <= number <= 65535:
        raise MetadataError(field, f"expected a port between 1 and 65535, got {number}")
    return f"[{ip}]:{number}" if ip.version == 6 else f"{ip}:{number}"


def _nameservers(configuration: Mapping[str, object]) -> list[str]:
    raw = lookup(configuration, "nameservers")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise MetadataError("nameservers", "expected a list of IP addresses (ip or ip:port)")
    return [_nameserver(f"nameservers[{i}]", item) for i, item in enumerate(raw)]


class KubernetesResolver:
    """``<app-id>-daprlite.<namespace>.svc.<clusterDomain>`` -> one of its addresses."""

    def __init__(self) -> None:
        self.settings = KubernetesSettings()
        self.nameservers: list[str] = []
        self._self_namespace = ""
        self._dns: aiodns.DNSResolver | None = None
        self._turns: dict[str, int] = {}

    async def init(self, configuration: Mapping[str, object], self_info: SelfInfo) -> None:
        reject_unknown(
            configuration, ("clusterDomain", "internalPort", "grpcPort", "proxyPort", "nameservers")
        )
        self.settings = decode_scalars(
            KubernetesSettings, configuration, structured=("nameservers",)
        )
        self.nameservers = _nameservers(configuration)
        self._self_namespace = self_info.namespace
        if self.nameservers:
            # Imported here: without nameservers the system resolver needs no extra package.
            try:
                import aiodns
            except ModuleNotFoundError as exc:
                raise MissingDriverError(COMPONENT_TYPE, "aiodns", "kubernetes") from exc
            self._dns = aiodns.DNSResolver(
                nameservers=self.nameservers, timeout=_DNS_TIMEOUT, tries=_DNS_TRIES
            )
        _log.info(
            "name resolution: kubernetes, <app-id>%s.<namespace>.svc.%s through %s",
            SERVICE_SUFFIX,
            self.settings.clusterDomain,
            ", ".join(self.nameservers) or "the system resolver",
        )

    def dns_name(self, request: ResolveRequest) -> str:
        """The Service name of the app's sidecar; raises AppNotFoundError if it cannot be one."""
        namespace = request.namespace or self._self_namespace or "default"
        service = f"{request.app_id.lower()}{SERVICE_SUFFIX}"
        checks = (("app id", request.app_id, service), ("namespace", namespace, namespace))
        for what, given, label in checks:
            if not _LABEL.match(label):
                raise AppNotFoundError(
                    f"{what} {given!r} cannot be part of the Kubernetes DNS name "
                    f"{service}.{namespace}.svc.{self.settings.clusterDomain}: a DNS label "
                    "holds at most 63 letters, digits and '-'"
                )
        return f"{service}.{namespace}.svc.{self.settings.clusterDomain}"

    async def resolve(self, request: ResolveRequest) -> Address:
        name = self.dns_name(request)
        hosts = await (self._query(name) if self._dns else self._getaddrinfo(name))
        if not hosts:
            raise AppNotFoundError(f"the DNS name {name} has no A or AAAA record")
        # A headless Service answers with every pod: spread the calls over them.
        turn = self._turns.get(name, 0)
        self._turns[name] = turn + 1
        return Address(
            host=hosts[turn % len(hosts)],
            internal_port=self.settings.internalPort,
            grpc_port=self.settings.grpcPort,
            proxy_port=self.settings.proxyPort,
        )

    def forget(self, request: ResolveRequest) -> None:
        """Nothing to drop: every call asks DNS afresh."""

    async def close(self) -> None:
        if self._dns is not None:
            await self._dns.close()
            self._dns = None

    async def _getaddrinfo(self, name: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            # The trailing dot makes the name absolute, which skips the pod's search
            # domains (ndots:5 would otherwise cost several queries per call).
            infos = await loop.getaddrinfo(f"{name}.", None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            if exc.errno in _GAI_NOT_FOUND:
                raise AppNotFoundError(f"the DNS name {name} does not exist ({exc})") from exc
            raise ComponentError(f"DNS lookup of {name} failed: {exc}") from exc
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    async def _query(self, name: str) -> list[str]:
        import aiodns
        import pycares

        assert self._dns is not None
        for qtype in ("A", "AAAA"):
            try:
                result = await self._dns.query_dns(name, qtype)
            except aiodns.error.DNSError as exc:
                code = exc.args[0] if exc.args else None
                if code == pycares.errno.ARES_ENOTFOUND:
                    raise AppNotFoundError(
                        f"the DNS name {name} does not exist (NXDOMAIN from "
                        f"{', '.join(self.nameservers)})"
                    ) from exc
                if code == pycares.errno.ARES_ENODATA:
                    continue  # the name exists without this record type: try the next
                raise ComponentError(
                    f"DNS lookup of {name} through {', '.join(self.nameservers)} failed: {exc}"
                ) from exc
            # The answer may lead with CNAME records; only the addresses matter.
            addresses = (pycares.ARecordData, pycares.AAAARecordData)
            hosts = [rr.data.addr for rr in result.answer if isinstance(rr.data, addresses)]
            if hosts:
                return hosts
        return []
