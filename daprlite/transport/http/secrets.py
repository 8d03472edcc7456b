"""HTTP routes of the secrets API: ``GET /v1.0/secrets/{store}/{key}`` and ``/bulk``."""

from __future__ import annotations

from aiohttp import web

from daprlite.blocks.secrets import SecretsAPI
from daprlite.transport.http.common import request_metadata

API_KEY = web.AppKey("secrets_api", SecretsAPI)


async def get_secret(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    values = await api.get(
        request.match_info["store"], request.match_info["key"], request_metadata(request)
    )
    return web.json_response(values)


async def bulk_secret(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    return web.json_response(
        await api.bulk_get(request.match_info["store"], request_metadata(request))
    )


def routes() -> list[web.RouteDef]:
    # The literal key "bulk" always means the bulk route, as in Dapr.
    return [
        web.get("/v1.0/secrets/{store}/bulk", bulk_secret),
        web.get("/v1.0/secrets/{store}/{key}", get_secret),
    ]
