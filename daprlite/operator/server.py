"""``daprlite operator`` at run time: the workload watches, the reconciler and ``/healthz``.

:func:`serve` wires the pieces together for the CLI (``cli/operator.py``):
one :class:`~daprlite.operator.cluster.Cluster` on the given API client, a
watch per workload kind feeding the :class:`~daprlite.operator.reconcile.Reconciler`,
its worker, a periodic resync, and an HTTP server whose ``GET /healthz``
answers 503 until every workload kind has been listed once and 200 after —
the Deployment's readiness and liveness probes. Everything stops, in reverse
order, when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
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


def health_app(ready: asyncio.Event) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if ready.is_set():
            return web.json_response({"status": "ok"})
        return web.json_response(
            {"status": "starting", "message": "deployments and statefulsets not listed yet"},
            status=503,
        )

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
    async with AsyncExitStack() as stack:
        runner = web.AppRunner(health_app(reconciler.ready), access_log=None, shutdown_timeout=1)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, options.listen_address, options.health_port)
        await site.start()
        tasks = [asyncio.create_task(reconciler.run(), name="operator-reconciler")]
        stack.push_async_callback(_cancel_all, tasks)
        for kind in WORKLOAD_KINDS:
            on_event, on_relist = reconciler.handlers(kind)
            watch = cluster.watch(kind)
            tasks.append(
                asyncio.create_task(
                    watch.run(on_event, on_relist, _lister(cluster, kind)),
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


def _lister(
    cluster: Cluster, kind: WorkloadKind
) -> Callable[[], Awaitable[tuple[list[Mapping[str, object]], str]]]:
    async def lister() -> tuple[list[Mapping[str, object]], str]:
        return await cluster.list_workloads(kind)

    return lister
