"""``nameresolution.standalone``: find a callee's sidecar in this machine's run folder.

The laptop default (DESIGN.md, D3), also registered as ``mdns`` so that
Configurations written for Dapr keep working. Every running sidecar records
itself in the run folder (:mod:`.runfolder`); the invocation block calls
:meth:`StandaloneResolver.resolve` on every call, so the folder listing is
cached: it is read again when the folder changes (its mtime), at most
:data:`RESCAN_AFTER` seconds after the last read, when a cached instance's
process has died, when an app is not in the cached listing, and after
:meth:`StandaloneResolver.forget`. Several live instances of one app are
taken in turn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daprlite.components.metadata import setting
from daprlite.components.nameresolution import runfolder
from daprlite.components.nameresolution._config import decode_scalars, reject_unknown
from daprlite.components.nameresolution.api import (
    Address,
    AppNotFoundError,
    ResolveRequest,
    SelfInfo,
)

_log = logging.getLogger("daprlite.nameresolution")

RESCAN_AFTER = 0.5  # seconds a listing is trusted when the folder's mtime has not moved
# A sidecar listening on every interface is dialled on loopback: it runs on this machine.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}

_AppKey = tuple[str, str]  # (app id, namespace with "" spelt "default")


@dataclass(frozen=True, slots=True)
class StandaloneSettings:
    """``spec.nameResolution.configuration`` of ``standalone`` (and ``mdns``)."""

    folder: str = setting(
        "",
        doc="The run folder to read. Empty means the one every sidecar writes to: "
        "$DAPRLITE_HOME/run, by default ~/.daprlite/run.",
    )


def _namespace(namespace: str) -> str:
    # Dapr treats a missing namespace as "default"; records written without NAMESPACE say "".
    return namespace or "default"


class StandaloneResolver:
    """Live sidecars of the run folder, by app id and namespace, round-robin."""

    def __init__(self) -> None:
        self.settings = StandaloneSettings()
        self._folder = runfolder.default_folder()
        self._self_namespace = ""
        self._by_app: dict[_AppKey, list[runfolder.Instance]] = {}
        self._scanned_at = -math.inf  # time.monotonic() when the cached listing was started
        self._folder_mtime: int | None = None
        self._turns: dict[_AppKey, int] = {}
        self._scan_lock = asyncio.Lock()

    @property
    def folder(self) -> Path:
        return self._folder

    async def init(self, configuration: Mapping[str, object], self_info: SelfInfo) -> None:
        reject_unknown(configuration, ("folder",))
        self.settings = decode_scalars(StandaloneSettings, configuration)
        folder = self.settings.folder.strip()
        self._folder = (
            Path(folder).expanduser().absolute() if folder else runfolder.default_folder()
        )
        self._self_namespace = self_info.namespace
        _log.info("name resolution: standalone, from the run folder %s", self._folder)

    async def resolve(self, request: ResolveRequest) -> Address:
        key = (request.app_id, _namespace(request.namespace or self._self_namespace))
        scanned = False
        if self._listing_outdated():
            await self._rescan()
            scanned = True
        candidates, died = self._live(key)
        # A dead cached instance means a callee stopped, and perhaps restarted under a new
        # record; an unknown app may have started within the mtime's resolution. Both are
        # worth one fresh read before answering.
        if died or (not candidates and not scanned):
            await self._rescan()
            candidates, _ = self._live(key)
        if not candidates:
            raise AppNotFoundError(
                f"app id {key[0]!r} in namespace {key[1]!r}: no running sidecar is "
                f"registered in {self._folder}"
            )
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        chosen = candidates[turn % len(candidates)]
        return Address(
            host=_WILDCARDS.get(chosen.host, chosen.host),
            internal_port=chosen.internal_port,
            grpc_port=chosen.grpc_port,
            proxy_port=chosen.proxy_port,
        )

    def forget(self, request: ResolveRequest) -> None:
        """Drop what is cached about this app: call it after failing to reach an address.

        The next :meth:`resolve` reads the folder again, so a callee that restarted
        on new ports is found on the caller's retry.
        """
        key = (request.app_id, _namespace(request.namespace or self._self_namespace))
        self._by_app.pop(key, None)
        self._scanned_at = -math.inf

    async def close(self) -> None:
        self._by_app.clear()
        self._turns.clear()
        self._scanned_at = -math.inf

    def _folder_mtime_now(self) -> int | None:
        try:
            return os.stat(self._folder).st_mtime_ns
        except OSError:
            return None

    def _listing_outdated(self) -> bool:
        if time.monotonic() - self._scanned_at > RESCAN_AFTER:
            return True
        # Records are written by rename, which always touches the folder's mtime.
        return self._folder_mtime_now() != self._folder_mtime

    def _live(self, key: _AppKey) -> tuple[list[runfolder.Instance], bool]:
        """Cached instances of the app whose process still runs, and whether one has died."""
        cached = self._by_app.get(key, [])
        # One kill(pid, 0) each: cheap enough for every call, and a dead callee is never
        # handed out even within the listing's short life.
        alive = [inst for inst in cached if runfolder.pid_alive(inst.pid)]
        died = len(alive) != len(cached)
        if died:
            self._by_app[key] = alive
        return alive, died

    async def _rescan(self) -> None:
        asked_at = time.monotonic()
        async with self._scan_lock:
            if self._scanned_at >= asked_at:
                return  # another caller read the folder after we asked
            started = time.monotonic()
            # The mtime is taken before reading: a record written during the read moves
            # it again, so the next call reads once more rather than missing the record.
            mtime = self._folder_mtime_now()
            # Off the event loop: a read opens every record and checks /proc for each.
            instances = await asyncio.to_thread(runfolder.live_instances, self._folder)
            by_app: dict[_AppKey, list[runfolder.Instance]] = {}
            for inst in instances:
                by_app.setdefault((inst.app_id, _namespace(inst.namespace)), []).append(inst)
            self._by_app = by_app
            self._folder_mtime = mtime
            self._scanned_at = started
