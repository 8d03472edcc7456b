"""What ``daprlite operator`` and ``daprlite sentry`` share: a Kubernetes API client
held open until SIGINT or SIGTERM, with start-up failures (a missing ``kubernetes``
extra, no cluster configuration) reported in one line.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient


def missing_extra(command: str, exc: ModuleNotFoundError) -> int:
    """Exit status 1, saying which extra brings the driver ``command`` needs."""
    print(
        f"daprlite {command} needs the Python package {exc.name!r}; "
        "install it with: pip install 'daprlite[kubernetes]'",
        file=sys.stderr,
    )
    return 1


async def serve_until_signalled(
    command: str,
    kubeconfig: str,
    serve: Callable[[ApiClient, asyncio.Event], Awaitable[None]],
    fatal: tuple[type[Exception], ...] = (),
) -> int:
    """Run ``serve(client, stop)`` until it returns; exit status 1 on a ``fatal`` error."""
    from daprlite.kubernetes.client import KubernetesConfigError, api_client

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        client = await api_client(kubeconfig)
    except KubernetesConfigError as exc:
        print(f"daprlite {command}: {exc}", file=sys.stderr)
        return 1
    try:
        await serve(client, stop)
    except fatal as exc:
        print(f"daprlite {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    return 0
