"""Start-up step 8 for input bindings: find which ones the app handles, then start them.

HTTP apps are probed with ``OPTIONS /{route}`` (2xx or 405 = handled) unless the
binding's ``direction`` names ``input``; gRPC apps are asked once through
``ListInputBindings``. Each handled binding's :meth:`InputBinding.read` gets a
handler that delivers the event to the app and raises
:class:`DeliveryError` when the app fails, so the component retries or leaves
the event unacknowledged.

Each call to the app runs under the binding's inbound resiliency policy
(``components.<name>.inbound``, from ``BindingsAPI.resiliency``): its timeout
bounds an attempt, its retries repeat a failed one, its breaker counts them.
Whichever way the policy gives up, the component still gets a
:class:`DeliveryError`, so the event is never dropped. A gRPC app's response
action (forwarding to output bindings) runs once, after the app accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
import grpc

from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2
from daprlite.blocks._resilient import failure_reason
from daprlite.blocks.bindings import BindingsAPI, directions
from daprlite.channel.grpc import GRPCAppChannel
from daprlite.channel.http import HTTPAppChannel
from daprlite.components.bindings.api import BindingEvent, DeliveryError, Handler, InputBinding
from daprlite.errors import APIError
from daprlite.resiliency import CircuitOpenError, Policy, ResiliencyTimeoutError
from daprlite.runtime.registry import ComponentStore, LiveComponent

log = logging.getLogger("daprlite.bindings")

AppChannel = HTTPAppChannel | GRPCAppChannel
# Header values must be a single line of visible characters.
_HEADER_SAFE = re.compile(r"^[\x20-\x7e\t]*$")
T = TypeVar("T")


def _headers(metadata: Mapping[str, str]) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    for k, v in metadata.items():
        if k and _HEADER_SAFE.match(k) and _HEADER_SAFE.match(v) and ":" not in k:
            out[k] = v
    return out


async def _to_app(policy: Policy, name: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run one call to the app under the inbound policy; every failure ends as DeliveryError."""
    try:
        return await policy.execute(call, retriable=_app_failed)
    except (ResiliencyTimeoutError, CircuitOpenError) as exc:
        raise DeliveryError(f"binding {name}: event not delivered: {failure_reason(exc)}") from exc


def _app_failed(exc: Exception) -> bool:
    # The app refused or could not be reached, or the attempt timed out. Anything else
    # is a bug on our side: the component's own redelivery handles it.
    return isinstance(exc, DeliveryError | TimeoutError)


def _http_handler(channel: HTTPAppChannel, name: str, route: str, policy: Policy) -> Handler:
    async def post(event: BindingEvent) -> bytes | None:
        try:
            res = await channel.request("POST", route, event.data, _headers(event.metadata))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise DeliveryError(f"binding {name}: app unreachable: {exc}") from exc
        if not 200 <= res.status < 300:
            raise DeliveryError(f"binding {name}: app answered {res.status} on /{route}")
        return res.body

    async def deliver(event: BindingEvent) -> bytes | None:
        return await _to_app(policy, name, lambda: post(event))

    return deliver


async def _forward(
    bindings: BindingsAPI, source: str, to: list[str], data: bytes, parallel: bool
) -> None:
    """Dapr's gRPC response action: send the app's ``data`` to the ``to`` bindings (create)."""
    try:
        payload = json.dumps(json.loads(data or b"null"), separators=(",", ":")).encode()
    except ValueError as exc:
        raise DeliveryError(f"binding {source}: the app's response data is not JSON") from exc

    async def send(target: str) -> None:
        try:
            await bindings.invoke(target, "create", payload, {})
        except APIError as exc:
            raise DeliveryError(f"binding {source}: forwarding to {target} failed: {exc}") from exc

    if parallel:
        await asyncio.gather(*(send(t) for t in to))
    else:
        for target in to:  # sequential: the first failure stops the chain
            await send(target)


def _grpc_handler(
    channel: GRPCAppChannel, name: str, bindings: BindingsAPI, policy: Policy
) -> Handler:
    async def call(event: BindingEvent) -> appcallback_pb2.BindingEventResponse:
        try:
            return await channel.on_binding_event(name, event.data, event.metadata)
        except grpc.aio.AioRpcError as exc:
            raise DeliveryError(
                f"binding {name}: app answered {exc.code().name}: {exc.details()}"
            ) from exc
        except ConnectionError as exc:
            raise DeliveryError(f"binding {name}: {exc}") from exc

    async def deliver(event: BindingEvent) -> bytes | None:
        res = await _to_app(policy, name, lambda: call(event))
        if res.to:
            await _forward(bindings, name, list(res.to), res.data, res.concurrency == 1)
        return None

    return deliver


async def _http_app_handles(channel: HTTPAppChannel, comp: LiveComponent, route: str) -> bool:
    if "input" in directions(comp):
        return True
    try:
        res = await channel.request("OPTIONS", route, timeout=3)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("input binding %s: probing the app failed: %s", comp.name, exc)
        return False
    return 200 <= res.status < 300 or res.status == 405


async def start_input_bindings(
    components: ComponentStore, channel: AppChannel | None, bindings: BindingsAPI
) -> list[str]:
    """Start every input binding the app handles; returns their names."""
    inputs = [
        c
        for c in components.of_category("bindings")
        if isinstance(c.instance, InputBinding) and (not directions(c) or "input" in directions(c))
    ]
    if not inputs:
        return []
    if channel is None:
        log.info(
            "no app port: input bindings %s deliver nowhere and stay stopped",
            ", ".join(c.name for c in inputs),
        )
        return []
    grpc_names: set[str] = set()
    if isinstance(channel, GRPCAppChannel):
        try:
            grpc_names = set(await channel.list_input_bindings())
        except grpc.aio.AioRpcError as exc:
            log.warning("ListInputBindings failed, no input bindings started: %s", exc.details())
            return []
    started: list[str] = []
    for comp in inputs:
        policy = bindings.resiliency.component_inbound(comp.name, "binding")
        if isinstance(channel, HTTPAppChannel):
            route = comp.property("route") or comp.name
            if not await _http_app_handles(channel, comp, route):
                log.info(
                    "input binding %s: the app has no route /%s; not started", comp.name, route
                )
                continue
            handler = _http_handler(channel, comp.name, route, policy)
        else:
            if comp.name not in grpc_names:
                log.info("input binding %s: the app does not list it; not started", comp.name)
                continue
            handler = _grpc_handler(channel, comp.name, bindings, policy)
        binding = comp.instance
        assert isinstance(binding, InputBinding)
        try:
            await binding.read(handler)
        except Exception as exc:
            # Its source keeps the events (nothing is consumed), so the sidecar stays
            # up for its other blocks; the log says which binding is not reading.
            log.error("input binding %s could not start reading: %s", comp.name, exc)
            continue
        started.append(comp.name)
        log.info("input binding %s started", comp.name)
    return started
