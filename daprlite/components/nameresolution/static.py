"""``nameresolution.static``: callee sidecars listed in the Configuration itself.

For fixed deployments without a shared run folder or cluster DNS (several
machines, containers with known addresses). The table is
``spec.nameResolution.configuration.apps``; every row is one instance of an
app's sidecar. The invocation block calls :meth:`StaticResolver.resolve` on
every call; several rows of one app are taken in turn. A row without a
namespace belongs to ``default`` (the same as an empty one), as everywhere in
name resolution.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields

from daprlite.components.errors import MetadataError
from daprlite.components.metadata import setting
from daprlite.components.nameresolution._config import decode_scalars, lookup, reject_unknown
from daprlite.components.nameresolution.api import (
    Address,
    AppNotFoundError,
    ResolveRequest,
    SelfInfo,
)

_log = logging.getLogger("daprlite.nameresolution")

_AppKey = tuple[str, str]  # (app id, namespace with "" spelt "default")


def _plain_name(field: str, value: str) -> None:
    # A dot would make "orders.prod" ambiguous: invocation ids split app and namespace on it.
    if not value or any(c.isspace() or c == "." for c in value):
        raise MetadataError(field, f"expected a name without dots or spaces, got {value!r}")


def _port(field: str, value: int, lowest: int) -> None:
    if not lowest <= value <= 65535:
        raise MetadataError(field, f"expected a port between {lowest} and 65535, got {value}")


@dataclass(frozen=True, slots=True)
class StaticApp:
    """One row of ``apps``: where one instance of an app's sidecar listens."""

    appId: str = setting(required=True, doc="The app id that callers invoke.")
    namespace: str = setting("", doc="The app's namespace; empty means 'default'.")
    host: str = setting(
        required=True, doc="Host name or IP address of the sidecar, without a port."
    )
    internalPort: int = setting(
        required=True, doc="The sidecar's port for sidecar-to-sidecar invocation."
    )
    grpcPort: int = setting(0, doc="The sidecar's gRPC API port, for gRPC proxying; 0: unknown.")
    proxyPort: int = setting(
        0, doc="The sidecar's mTLS port for proxied gRPC calls (mTLS only); 0: unknown."
    )

    def __post_init__(self) -> None:
        _plain_name("appId", self.appId)
        if self.namespace:
            _plain_name("namespace", self.namespace)
        object.__setattr__(self, "host", _host(self.host))
        _port("internalPort", self.internalPort, 1)
        _port("grpcPort", self.grpcPort, 0)
        _port("proxyPort", self.proxyPort, 0)


def _host(text: str) -> str:
    host = text.strip()
    if not host or "/" in host or any(c.isspace() for c in host):
        raise MetadataError("host", f"expected a host name or IP address, got {text!r}")
    if ":" not in host:
        return host
    # Only an IPv6 address holds colons; "[::1]" is accepted and kept bare.
    try:
        return str(ipaddress.IPv6Address(host.removeprefix("[").removesuffix("]")))
    except ValueError:
        raise MetadataError(
            "host",
            f"expected a host name or IP address without a port (the port goes in "
            f"internalPort), got {text!r}",
        ) from None


def _apps(configuration: Mapping[str, object]) -> list[StaticApp]:
    reject_unknown(configuration, ("apps",))
    raw = lookup(configuration, "apps")
    if not isinstance(raw, list) or not raw:
        raise MetadataError(
            "apps", "is required: a list of {appId, namespace, host, internalPort, grpcPort}"
        )
    known = [f.name for f in fields(StaticApp)]
    rows: list[StaticApp] = []
    seen: dict[tuple[str, str, str, int], int] = {}
    for i, entry in enumerate(raw):
        where = f"apps[{i}]"
        if not isinstance(entry, Mapping):
            raise MetadataError(where, "expected a table with appId, host and internalPort")
        reject_unknown(entry, known, where=f"{where}.")
        row = decode_scalars(StaticApp, entry, where=f"{where}.")
        key = (row.appId, row.namespace or "default", row.host, row.internalPort)
        if key in seen:
            raise MetadataError(where, f"repeats apps[{seen[key]}] (same app, host and port)")
        seen[key] = i
        rows.append(row)
    return rows


class StaticResolver:
    """A fixed table of app instances, round-robin per app."""

    def __init__(self) -> None:
        self._table: dict[_AppKey, tuple[Address, ...]] = {}
        self._self_namespace = ""
        self._turns: dict[_AppKey, int] = {}

    async def init(self, configuration: Mapping[str, object], self_info: SelfInfo) -> None:
        table: dict[_AppKey, list[Address]] = {}
        for row in _apps(configuration):
            address = Address(row.host, row.internalPort, row.grpcPort, row.proxyPort)
            table.setdefault((row.appId, row.namespace or "default"), []).append(address)
        self._table = {key: tuple(addresses) for key, addresses in table.items()}
        self._self_namespace = self_info.namespace
        _log.info(
            "name resolution: static table of %d app(s): %s",
            len(self._table),
            ", ".join(sorted(f"{app}.{ns}" for app, ns in self._table)),
        )

    async def resolve(self, request: ResolveRequest) -> Address:
        key = (request.app_id, request.namespace or self._self_namespace or "default")
        addresses = self._table.get(key)
        if not addresses:
            raise AppNotFoundError(
                f"app id {key[0]!r} in namespace {key[1]!r} is not in the static "
                "name-resolution table (spec.nameResolution.configuration.apps)"
            )
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        return addresses[turn % len(addresses)]

    def forget(self, request: ResolveRequest) -> None:
        """Nothing is cached beyond the table itself, which only a restart changes."""

    async def close(self) -> None:
        self._turns.clear()
