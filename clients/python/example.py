"""Example: save, read, conditionally update and delete one key with StateClient.

Runs as an application next to a daprlite (or Dapr) sidecar and talks to the
sidecar's gRPC port, taken from DAPR_GRPC_PORT as ``dapr run`` sets it::

    daprlite run --app-id demo -- python clients/python/example.py [statestore]

The store name defaults to ``statestore``. DAPR_API_TOKEN is sent when set.
"""

from __future__ import annotations

import asyncio
import os
import sys

from daprlite_client import EtagMismatchError, StateClient


async def main(store: str) -> None:
    port = os.environ.get("DAPR_GRPC_PORT", "50001")
    host = os.environ.get("DAPR_RUNTIME_HOST", "127.0.0.1")
    token = os.environ.get("DAPR_API_TOKEN") or None

    async with StateClient(f"{host}:{port}", api_token=token, timeout=10) as client:
        await client.save(store, "order-1", b'{"total": 3}')
        value, etag = await client.get(store, "order-1")
        print(f"read {value!r} with etag {etag!r}")

        # A write that carries the etag we read succeeds once ...
        await client.save(store, "order-1", b'{"total": 4}', etag=etag)
        # ... and a second write with the same, now stale, etag is refused.
        try:
            await client.save(store, "order-1", b'{"total": 5}', etag=etag)
        except EtagMismatchError as error:
            print(f"refused as expected: {error}")

        await client.save(store, "session-1", "short-lived", ttl_seconds=60)

        await client.delete(store, "order-1")
        value, etag = await client.get(store, "order-1")
        print(f"after delete: {value!r}, etag {etag!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "statestore"))
