"""HTTP routes for health, metadata and shutdown (``/v1.0/healthz``, ``/v1.0/metadata``, ...).

Renders the metadata block's snapshot as Dapr's JSON and flips the lifecycle's
shutdown switch; no logic of its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from aiohttp import web

from daprlite import errors
from daprlite.blocks.metadata import (
    Health,
    MetadataAPI,
    MetadataSnapshot,
    SubscriptionInfo,
    go_duration,
)
from daprlite.transport.http.common import read_body

log = logging.getLogger("daprlite.http")

HEALTH_KEY = web.AppKey("health", Health)
METADATA_KEY = web.AppKey("metadata_api", MetadataAPI)
SHUTDOWN_KEY: web.AppKey[Callable[[], None]] = web.AppKey("request_shutdown")


async def healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    if not health.ready:
        raise errors.HEALTH_NOT_READY("dapr is not ready")
    wanted = request.query.get("appid")
    if wanted is not None and wanted != request.app[METADATA_KEY].app_id:
        raise errors.HEALTH_APPID_NOT_MATCH(f"dapr app-id does not match {wanted!r}")
    return web.Response(status=204)


async def healthz_outbound(request: web.Request) -> web.Response:
    if not request.app[HEALTH_KEY].outbound_ready:
        raise errors.OUTBOUND_HEALTH_NOT_READY("dapr outbound is not ready")
    return web.Response(status=204)


def snapshot_json(snap: MetadataSnapshot) -> dict[str, object]:
    out: dict[str, object] = {
        "id": snap.id,
        "runtimeVersion": snap.runtime_version,
        "components": [
            {
                "name": c.name,
                "type": c.type,
                "version": c.version,
                "capabilities": list(c.capabilities),
            }
            for c in snap.components
        ],
        "extended": dict(snap.extended),
        "actorRuntime": {"runtimeStatus": "DISABLED", "hostReady": False},
    }
    if snap.enabled_features:
        out["enabledFeatures"] = list(snap.enabled_features)
    if snap.subscriptions:
        out["subscriptions"] = [_subscription_json(s) for s in snap.subscriptions]
    if snap.resiliencies:
        out["resiliencies"] = [{"name": n} for n in snap.resiliencies]
    if snap.app_connection is not None:
        ac = snap.app_connection
        out["appConnectionProperties"] = {
            "port": ac.port,
            "protocol": ac.protocol,
            "channelAddress": ac.channel_address,
            "maxConcurrency": ac.max_concurrency,
        }
        if ac.health is not None:
            out["appConnectionProperties"]["health"] = {  # type: ignore[index]
                "healthCheckPath": ac.health.path,
                "healthProbeInterval": go_duration(ac.health.interval),
                "healthProbeTimeout": go_duration(ac.health.timeout),
                "healthThreshold": ac.health.threshold,
            }
    return out


def _subscription_json(sub: SubscriptionInfo) -> dict[str, object]:
    out: dict[str, object] = {"pubsubname": sub.pubsub, "topic": sub.topic}
    if sub.metadata:
        out["metadata"] = dict(sub.metadata)
    if sub.rules:
        out["rules"] = [_rule_json(match, path) for match, path in sub.rules]
    out["deadLetterTopic"] = sub.dead_letter_topic
    out["type"] = sub.type
    return out


def _rule_json(match: str, path: str) -> dict[str, str]:
    # Empty fields are left out, as Dapr's JSON does.
    return {k: v for k, v in (("match", match), ("path", path)) if v}


async def get_metadata(request: web.Request) -> web.Response:
    return web.json_response(snapshot_json(request.app[METADATA_KEY].snapshot()))


async def put_metadata(request: web.Request) -> web.Response:
    body = await read_body(request)
    try:
        value = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.MALFORMED_REQUEST("metadata value must be UTF-8 text") from exc
    request.app[METADATA_KEY].set(request.match_info.get("key", ""), value)
    return web.Response(status=204)


async def shutdown(request: web.Request) -> web.Response:
    if request.headers.get("dapr-force-shutdown", "").lower() == "true":
        log.warning("forced shutdown requested through the API")
        os._exit(1)
    request.app[SHUTDOWN_KEY]()
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1.0/healthz", healthz),
        web.get("/v1.0/healthz/outbound", healthz_outbound),
        web.get("/v1.0/metadata", get_metadata),
        web.put("/v1.0/metadata/{key}", put_metadata),
        web.put("/v1.0/metadata/", put_metadata),  # an empty key is a no-op, as in Dapr
        web.post("/v1.0/shutdown", shutdown),
    ]
