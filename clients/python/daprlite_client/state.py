"""A small async client for the state API of a daprlite (or Dapr) sidecar.

It sits in the application process and calls the sidecar's
``dapr.proto.runtime.v1.Dapr`` gRPC service (``GetState``, ``SaveState``,
``DeleteState``) over ``grpc.aio``. It is deliberately thin: one channel, one
call per method, and gRPC failures turned into errors that name the store and
the key. Use the official ``dapr`` SDK when you need more than this.

Example::

    async with StateClient("127.0.0.1:50001") as client:
        await client.save("statestore", "order-1", b'{"total": 3}')
        value, etag = await client.get("statestore", "order-1")
"""

from __future__ import annotations

import grpc

from daprlite_client._channel import SidecarChannel
from daprlite_client._proto.dapr.proto.common.v1 import common_pb2
from daprlite_client._proto.dapr.proto.runtime.v1 import dapr_pb2_grpc, state_pb2

# The state item metadata key Dapr stores use for a per-item time to live.
TTL_METADATA_KEY = "ttlInSeconds"


class StateError(Exception):
    """A state call failed; carries the gRPC status, store and key."""

    def __init__(self, operation: str, store: str, key: str, code: grpc.StatusCode, detail: str):
        super().__init__(
            f"{operation} of key {key!r} in state store {store!r} failed: {code.name}: {detail}"
        )
        self.operation = operation
        self.store = store
        self.key = key
        self.code = code
        self.detail = detail


class EtagMismatchError(StateError):
    """The etag given with a save or delete no longer matches the stored value.

    The sidecar answers ABORTED for this; re-read the key and retry.
    """


def _state_error(operation: str, store: str, key: str, error: grpc.aio.AioRpcError) -> StateError:
    code = error.code()
    detail = error.details() or ""
    kind = EtagMismatchError if code == grpc.StatusCode.ABORTED else StateError
    return kind(operation, store, key, code, detail)


class StateClient(SidecarChannel):
    """Read, write and delete single keys through a sidecar's gRPC port.

    ``address`` is a gRPC target such as ``"127.0.0.1:50001"``. Pass
    ``api_token`` when the sidecar runs with ``DAPR_API_TOKEN``, and
    ``timeout`` (seconds) to put a deadline on every call. Create the client
    inside a running event loop, and close it (or use ``async with``) when done.
    """

    def __init__(
        self, address: str, *, api_token: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(address, api_token=api_token, timeout=timeout)
        self._stub = dapr_pb2_grpc.DaprStub(self._channel)

    async def get(self, store: str, key: str) -> tuple[bytes, str | None]:
        """Return ``(value, etag)``; a missing key gives ``(b"", None)``."""
        request = state_pb2.GetStateRequest(store_name=store, key=key)
        try:
            response = await self._stub.GetState(
                request, metadata=self._metadata, timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise _state_error("get", store, key, error) from error
        # Dapr answers a missing key with OK and an empty etag.
        return response.data, response.etag or None

    async def save(
        self,
        store: str,
        key: str,
        value: bytes | str,
        etag: str | None = None,
        ttl_seconds: int | None = None,
    ) -> None:
        """Write ``value``; with ``etag``, only if the stored etag still matches.

        Raises :class:`EtagMismatchError` when it does not.
        """
        item = common_pb2.StateItem(
            key=key,
            value=value.encode("utf-8") if isinstance(value, str) else value,
        )
        # An absent etag means "no concurrency check", so only set it when given.
        if etag is not None:
            item.etag.value = etag
        if ttl_seconds is not None:
            item.metadata[TTL_METADATA_KEY] = str(ttl_seconds)
        request = state_pb2.SaveStateRequest(store_name=store, states=[item])
        try:
            await self._stub.SaveState(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _state_error("save", store, key, error) from error

    async def delete(self, store: str, key: str, etag: str | None = None) -> None:
        """Delete ``key``; with ``etag``, only if the stored etag still matches.

        Raises :class:`EtagMismatchError` on a stale etag.
        """
        request = state_pb2.DeleteStateRequest(store_name=store, key=key)
        if etag is not None:
            request.etag.value = etag
        try:
            await self._stub.DeleteState(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise _state_error("delete", store, key, error) from error

    def __repr__(self) -> str:
        return f"StateClient({self._address!r})"
