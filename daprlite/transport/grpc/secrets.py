"""gRPC ``GetSecret`` / ``GetBulkSecret`` over the secrets block."""

from __future__ import annotations

from daprlite._proto.dapr.proto.runtime.v1 import secret_pb2
from daprlite.blocks.secrets import SecretsAPI
from daprlite.transport.grpc.common import call


class SecretRPCs:
    _secrets: SecretsAPI

    async def GetSecret(self, request, context):
        async def work() -> secret_pb2.GetSecretResponse:
            data = await self._secrets.get(request.store_name, request.key, dict(request.metadata))
            return secret_pb2.GetSecretResponse(data=data)

        return await call(context, work)

    async def GetBulkSecret(self, request, context):
        async def work() -> secret_pb2.GetBulkSecretResponse:
            data = await self._secrets.bulk_get(request.store_name, dict(request.metadata))
            return secret_pb2.GetBulkSecretResponse(
                data={k: secret_pb2.SecretResponse(secrets=v) for k, v in data.items()}
            )

        return await call(context, work)
