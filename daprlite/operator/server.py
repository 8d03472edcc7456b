"""``daprlite operator`` at run time: the workload watches, the reconciler and ``/healthz``.

:func:`serve` wires the pieces together for the CLI (``cli/operator.py``):
one :class:`~daprlite.operator.cluster.Cluster` on the given API client, a
watch per workload kind feeding the :class:`~daprlite.operator.reconcile.Reconciler`,
its worker, a periodic resync, and an HTTP server whose ``GET /healthz``
(the Deployment's readiness and liveness probes) answers 200 only while
:class:`Health` says so: every workload kind has been listed once, and no kind
has failed ``unhealthy_after`` list or watch attempts in a row (an API server
that stays unreachable, or RBAC taken away). The next attempt that succeeds
makes it 200 again. Everything stops, in reverse order, when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiohttp import web
from kubernetes_asyncio.client import ApiClient

from daprlite.operator.cluster import Cluster
from daprlite.operator.desired import WORKLOAD_KINDS, WorkloadKind
from daprlite.operator.reconcile import Reconciler

log = logging.getLogger("daprlite.operator")


@dataclass(frozen=True, slots=True)
class OperatorOptions:
    """The ``daprlite operator`` flags."""

    health_port: int = 8080
    listen_address: str = "0.0.0.0"
    resync_seconds: float = 300.0  # reconcile everything again this often
    kubeconfig: str = ""
    unhealthy_after: int = 5  # consecutive failed list/watch attempts of one kind


class Health:
    """Whether the operator sees the cluster: fed by every list and watch attempt."""

    def __init__(
        self, listed: asyncio.Event, kinds: Iterable[WorkloadKind], unhealthy_after: int
    ) -> None:
        if unhealthy_after < 1:
            raise ValueError(f"unhealthy_after: expected at least 1, got {unhealthy_after}")
        self._listed = listed
        self._threshold = unhealthy_after
        self._failures: dict[WorkloadKind, int] = dict.fromkeys(kinds, 0)

    def attempt(self, kind: WorkloadKind, ok: bool) -> None:
        """Record one list or watch attempt of ``kind``."""
        before = self._failures.get(kind, 0)
        after = 0 if ok else before + 1
        self._failures[kind] = after
        if after == self._threshold:
            log.error(
                "%d list/watch attempts of %s failed in a row: /healthz answers 503 until one "
                "succeeds",
                after,
                kind.plural,
            )
        elif ok and before >= self._threshold:
            log.info("listing and watching %s works again: /healthz answers 200", kind.plural)

    def problem(self) -> str:
        """Why the operator is not healthy, or '' when it is."""
        if not self._listed.is_set():
            return "deployments and statefulsets not listed yet"
        failing = sorted(k.plural for k, n in self._failures.items() if n >= self._threshold)
        if failing:
            return (
                f"the last {self._threshold} or more list/watch attempts of "
                f"{' and '.join(failing)} failed"
            )
        return ""


def health_app(health: Health) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        problem = health.problem()
        if not problem:
            return web.json_response({"status": "ok"})
        status = "starting" if problem.endswith("not listed yet") else "failing"
        return web.json_response({"status": status, "message": problem}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _resync_every(reconciler: Reconciler, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        reconciler.resync()


async def serve(options: OperatorOptions, client: ApiClient, stop: asyncio.Event) -> None:
    """Run the operator until ``stop`` is set; raises OSError if the health port is taken."""
    cluster = Cluster(client)
    reconciler = Reconciler(cluster)
    health = Health(reconciler.ready, WORKLOAD_KINDS, options.unhealthy_after)
    async with AsyncExitStack() as stack:
        runner = web.AppRunner(health_app(health), access_log=None, shutdown_timeout=1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, options.listen_address, options.health_port)
        await site.start()
        tasks = [asyncio.create_task(reconciler.run(), name="operator-reconciler")]
        stack.push_async_callback(_cancel_all, tasks)
        for kind in WORKLOAD_KINDS:
            on_event, on_relist, lister = reconciler.handlers(kind, health.attempt)
            watch = cluster.watch(kind, health.attempt)
            tasks.append(
                asyncio.create_task(
                    watch.run(on_event, on_relist, lister),
                    name=f"operator-watch-{kind.plural}",
                )
            )
        tasks.append(asyncio.create_task(_resync_every(reconciler, options.resync_seconds)))
        log.info(
            "operator started: watching %s in all namespaces; /healthz on %s:%d",
            " and ".join(k.plural for k in WORKLOAD_KINDS),
            options.listen_address,
            options.health_port,
        )
        await stop.wait()
        log.info("operator stopping")
