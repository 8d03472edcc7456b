"""HTTP routes of publishing: ``/v1.0/publish/{pubsub}/{topic...}`` and bulk publish.

Parses the body, ``Content-Type`` and ``?metadata.*``, continues the
caller's trace, and calls the pub/sub block; 204 on success. Bulk publish
answers 204, or the failed entries with ``ERR_PUBSUB_PUBLISH_MESSAGE``.
"""

from __future__ import annotations

import base64
import binascii
import json

from aiohttp import web

from daprlite import errors
from daprlite.blocks.pubsub.api import PublishEntry, PubSubAPI
from daprlite.blocks.pubsub.cloudevents import is_binary, is_json, media_type
from daprlite.observability.tracing import continue_trace
from daprlite.transport.http.common import read_body, request_metadata

API_KEY = web.AppKey("pubsub_api", PubSubAPI)


def _names(request: web.Request) -> tuple[str, str]:
    return request.match_info["pubsub"], request.match_info["topic"]


async def publish(request: web.Request) -> web.Response:
    name, topic = _names(request)
    body = await read_body(request)
    trace = continue_trace(request.headers.get("traceparent"), request.headers.get("tracestate"))
    await request.app[API_KEY].publish(
        name,
        topic,
        body,
        request.headers.get("Content-Type", ""),
        request_metadata(request),
        trace,
    )
    return web.Response(status=204)


def _entry(raw: object, index: int) -> PublishEntry:
    where = f"entries[{index}]"
    if not isinstance(raw, dict):
        raise errors.PUBSUB_EVENTS_SER(f"{where} must be an object")
    entry_id = raw.get("entryId")
    if not isinstance(entry_id, str) or not entry_id:
        raise errors.PUBSUB_EVENTS_SER(f"{where}.entryId is required")
    content_type = raw.get("contentType") or ""
    if not isinstance(content_type, str):
        raise errors.PUBSUB_EVENTS_SER(f"{where}.contentType must be a string")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise errors.PUBSUB_EVENTS_SER(f"{where}.metadata must be an object of strings")
    event = raw.get("event")
    if is_binary(content_type):
        if not isinstance(event, str):
            raise errors.PUBSUB_EVENTS_SER(f"{where}.event must be a base64 string")
        try:
            data = base64.b64decode(event, validate=True)
        except binascii.Error as exc:
            raise errors.PUBSUB_EVENTS_SER(f"{where}.event is not valid base64") from exc
    elif is_json(content_type) or media_type(content_type) == "":
        data = json.dumps(event, separators=(",", ":")).encode()
    elif isinstance(event, str):
        data = event.encode()
    else:
        raise errors.PUBSUB_EVENTS_SER(
            f"{where}.event must be a string for content type {content_type!r}"
        )
    return PublishEntry(entry_id, data, content_type or "application/json", metadata)


async def bulk_publish(request: web.Request) -> web.Response:
    name, topic = _names(request)
    body = await read_body(request)
    try:
        raw = json.loads(body)
    except ValueError as exc:
        raise errors.PUBSUB_EVENTS_SER(f"the bulk body is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise errors.PUBSUB_EVENTS_SER("the bulk body must be a JSON array of entries")
    entries = [_entry(e, i) for i, e in enumerate(raw)]
    trace = continue_trace(request.headers.get("traceparent"), request.headers.get("tracestate"))
    failed = await request.app[API_KEY].bulk_publish(
        name, topic, entries, request_metadata(request), trace
    )
    if not failed:
        return web.Response(status=204)
    problem = errors.PUBSUB_PUBLISH_MESSAGE(f"{len(failed)} of {len(entries)} entries failed")
    payload = {
        "failedEntries": [{"entryId": i, "error": e} for i, e in failed],
        "errorCode": problem.code,
    }
    return web.json_response(payload, status=problem.http_status)


def routes() -> list[web.RouteDef]:
    out: list[web.RouteDef] = []
    for method in (web.post, web.put):
        out += [
            method("/v1.0/publish/bulk/{pubsub}/{topic:.+}", bulk_publish),
            method("/v1.0-alpha1/publish/bulk/{pubsub}/{topic:.+}", bulk_publish),
            method("/v1.0/publish/{pubsub}/{topic:.+}", publish),
        ]
    return out
