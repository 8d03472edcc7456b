"""What every client in this package shares: one gRPC channel to a sidecar.

The channel, the ``dapr-api-token`` metadata and the per-call deadline, plus
``async with`` support and :meth:`SidecarChannel.close`.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

import grpc

API_TOKEN_HEADER = "dapr-api-token"


class SidecarChannel:
    """Base of the clients: ``address`` is a gRPC target such as ``"127.0.0.1:50001"``."""

    def __init__(
        self, address: str, *, api_token: str | None = None, timeout: float | None = None
    ) -> None:
        self._address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._metadata: tuple[tuple[str, str], ...] = (
            ((API_TOKEN_HEADER, api_token),) if api_token else ()
        )
        self._timeout = timeout

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls still in flight are cancelled."""
        await self._channel.close()
