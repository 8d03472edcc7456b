"""An in-process sidecar for pytest users (and our own tests and benchmarks).

    async with run_sidecar([components_dir], app_id="orders") as sidecar:
        url = f"http://127.0.0.1:{sidecar.ports.http}/v1.0/state/statestore"

Ports are picked free by the operating system; everything started is stopped
when the block exits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import yaml

from daprlite.config.options import Options
from daprlite.runtime.sidecar import Sidecar


def component_yaml(
    name: str,
    component_type: str,
    metadata: Mapping[str, str] | None = None,
    *,
    version: str = "v1",
    scopes: Iterable[str] = (),
) -> str:
    """A Component manifest as Dapr writes it."""
    doc: dict[str, object] = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name},
        "spec": {
            "type": component_type,
            "version": version,
            "metadata": [{"name": k, "value": v} for k, v in (metadata or {}).items()],
        },
    }
    if scopes:
        doc["scopes"] = list(scopes)
    return yaml.safe_dump(doc, sort_keys=False)


@asynccontextmanager
async def run_sidecar(
    resources_paths: Iterable[Path],
    app_id: str = "test-app",
    options: Options | None = None,
) -> AsyncIterator[Sidecar]:
    """Start a sidecar on free ports in this event loop; stop it on exit."""
    base = options or Options(app_id=app_id)
    opts = replace(
        base,
        app_id=app_id,
        http_port=0,
        grpc_port=0,
        resources_paths=tuple(Path(p) for p in resources_paths),
    )
    sidecar = Sidecar(opts)
    await sidecar.start()
    try:
        yield sidecar
    finally:
        await sidecar.stop()
