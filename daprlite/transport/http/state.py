"""HTTP routes of the state API (``/v1.0/state/...``, ``/v1.0-alpha1/state/.../query``).

Each handler parses the path, query and JSON body into the block's request
types, calls :class:`daprlite.blocks.state.StateAPI` and writes Dapr's reply
(raw value + ``ETag`` on GET, 204 on writes). Validation messages name the
field that was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from daprlite import errors
from daprlite.blocks.state import DeleteItem, SaveItem, StateAPI, TransactionItem
from daprlite.components.state.api import BulkGetItem
from daprlite.transport.http.common import (
    JSON,
    encode_json_value,
    json_body,
    metadata_headers,
    read_body,
    request_metadata,
)

API_KEY = web.AppKey("state_api", StateAPI)


def _str_map(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise errors.MALFORMED_REQUEST(f"{where} must be an object of string values")
    return value


def _ci(obj: Mapping[str, object], name: str) -> object:
    """Field lookup that ignores case, as Dapr's JSON decoding does."""
    if name in obj:
        return obj[name]
    low = name.lower()
    return next((v for k, v in obj.items() if k.lower() == low), None)


def _save_item(raw: object, where: str, query_meta: Mapping[str, str]) -> SaveItem:
    if not isinstance(raw, dict):
        raise errors.MALFORMED_REQUEST(f'{where} must be an object with a "key"')
    key = _ci(raw, "key")
    if not isinstance(key, str) or not key:
        raise errors.MALFORMED_REQUEST(f'{where}: "key" is a required field')
    etag = _ci(raw, "etag")
    if etag is not None and not isinstance(etag, str):
        raise errors.MALFORMED_REQUEST(f"{where}.etag must be a string")
    options = _ci(raw, "options") or {}
    if not isinstance(options, dict):
        raise errors.MALFORMED_REQUEST(f"{where}.options must be an object")
    concurrency, consistency = options.get("concurrency") or "", options.get("consistency") or ""
    if not isinstance(concurrency, str) or not isinstance(consistency, str):
        raise errors.MALFORMED_REQUEST(f"{where}.options values must be strings")
    metadata = {**_str_map(_ci(raw, "metadata"), f"{where}.metadata"), **query_meta}
    content_type = _ci(raw, "contentType")
    return SaveItem(
        key=key,
        value=encode_json_value(_ci(raw, "value"), f"{where}.value"),
        etag=etag or None,
        metadata=metadata,
        concurrency=concurrency,
        consistency=consistency,
        content_type=content_type if isinstance(content_type, str) else None,
    )


def _data_json(data: bytes) -> object:
    """Stored bytes as a JSON value: raw JSON when they are JSON, else a string."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data.decode("utf-8", errors="replace")


def _bulk_item(item: BulkGetItem) -> dict[str, object]:
    out: dict[str, object] = {"key": item.key}
    if item.data is not None:
        out["data"] = _data_json(item.data)
    if item.etag:
        out["etag"] = item.etag
    if item.metadata:
        out["metadata"] = dict(item.metadata)
    if item.error:
        out["error"] = item.error
    return out


async def get_state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    store, key = request.match_info["store"], request.match_info["key"]
    got = await api.get(store, key, request_metadata(request), request.query.get("consistency", ""))
    if got is None:
        return web.Response(status=204)
    headers = metadata_headers(got.metadata)
    if got.etag:
        headers["ETag"] = got.etag
    return web.Response(body=got.data, headers=headers, content_type=JSON)


async def save_state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    body = await json_body(request)
    if body is None:
        body = []
    if not isinstance(body, list):
        raise errors.MALFORMED_REQUEST("the request body must be a JSON array of state items")
    query_meta = request_metadata(request)
    items = [_save_item(raw, f"[{i}]", query_meta) for i, raw in enumerate(body)]
    if items:
        await api.save(request.match_info["store"], items)
    return web.Response(status=204)


async def delete_state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    item = DeleteItem(
        key=request.match_info["key"],
        etag=request.headers.get("If-Match") or None,
        metadata=request_metadata(request),
        concurrency=request.query.get("concurrency", ""),
        consistency=request.query.get("consistency", ""),
    )
    await api.delete(request.match_info["store"], item)
    return web.Response(status=204)


async def bulk_get_state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    body = await json_body(request) or {}
    if not isinstance(body, dict):
        raise errors.MALFORMED_REQUEST('the request body must be an object {"keys": [...]}')
    keys = body.get("keys") or []
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise errors.MALFORMED_REQUEST("keys must be an array of strings")
    parallelism = body.get("parallelism") or 0
    if not isinstance(parallelism, int) or parallelism < 0:
        raise errors.MALFORMED_REQUEST("parallelism must be a non-negative integer")
    metadata = {**_str_map(body.get("metadata"), "metadata"), **request_metadata(request)}
    items = await api.bulk_get(request.match_info["store"], keys, metadata, parallelism)
    return web.json_response([_bulk_item(i) for i in items])


async def transaction(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    body = await json_body(request) or {}
    if not isinstance(body, dict):
        raise errors.MALFORMED_REQUEST('the request body must be an object {"operations": [...]}')
    raw_ops = body.get("operations") or []
    if not isinstance(raw_ops, list):
        raise errors.MALFORMED_REQUEST("operations must be an array")
    ops: list[TransactionItem] = []
    for i, raw in enumerate(raw_ops):
        where = f"operations[{i}]"
        if not isinstance(raw, dict):
            raise errors.MALFORMED_REQUEST(f"{where} must be an object")
        operation = _ci(raw, "operation")
        if not isinstance(operation, str):
            raise errors.MALFORMED_REQUEST(f"{where}.operation is required (upsert or delete)")
        ops.append(
            TransactionItem(operation, _save_item(_ci(raw, "request"), f"{where}.request", {}))
        )
    metadata = {**_str_map(body.get("metadata"), "metadata"), **request_metadata(request)}
    await api.transact(request.match_info["store"], ops, metadata)
    return web.Response(status=204)


async def query_state(request: web.Request) -> web.Response:
    api = request.app[API_KEY]
    body = await read_body(request)
    res = await api.query(request.match_info["store"], body, request_metadata(request))
    if not res.results:
        return web.Response(status=204)
    out: dict[str, object] = {
        "results": [
            {"key": r.key, "data": _data_json(r.data), **({"etag": r.etag} if r.etag else {})}
            for r in res.results
        ]
    }
    if res.token:
        out["token"] = res.token
    if res.metadata:
        out["metadata"] = dict(res.metadata)
    return web.json_response(out)


def routes() -> list[web.RouteDef]:
    base = "/v1.0/state/{store}"
    return [
        web.get(base + "/{key}", get_state),
        web.delete(base + "/{key}", delete_state),
        web.post(base, save_state),
        web.put(base, save_state),
        web.post(base + "/bulk", bulk_get_state),
        web.put(base + "/bulk", bulk_get_state),
        web.post(base + "/transaction", transaction),
        web.put(base + "/transaction", transaction),
        web.post("/v1.0-alpha1/state/{store}/query", query_state),
        web.put("/v1.0-alpha1/state/{store}/query", query_state),
    ]
