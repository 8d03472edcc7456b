"""App health checks (``--enable-app-health-check``): probe the app, track its state.

The probe is ``GET <path>`` for HTTP apps (2xx is healthy) and
``AppCallbackHealthCheck/HealthCheck`` for gRPC apps. After ``threshold``
failed probes in a row the app counts as unhealthy: invocations of it are
refused as "unavailable" (so callers' retries apply) until a probe succeeds
again. Probes carry no app token, as in Dapr.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from daprlite.config.options import AppHealthOptions

log = logging.getLogger("daprlite.apphealth")


class Probe(Protocol):
    async def health_check(self, path: str, timeout: float) -> bool: ...


class AppHealth:
    def __init__(self, options: AppHealthOptions) -> None:
        self.options = options
        self.healthy = True
        self._failures = 0

    def record(self, ok: bool) -> None:
        if ok:
            if not self.healthy:
                log.info("the app is healthy again")
            self.healthy = True
            self._failures = 0
            return
        self._failures += 1
        if self.healthy and self._failures >= self.options.threshold:
            self.healthy = False
            log.warning(
                "the app failed %d health probes in a row; marking it unhealthy", self._failures
            )

    async def run(self, channel: Probe) -> None:
        """Probe forever (until cancelled)."""
        while True:
            self.record(await channel.health_check(self.options.path, self.options.timeout))
            await asyncio.sleep(self.options.interval)
