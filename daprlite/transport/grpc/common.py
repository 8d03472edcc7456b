"""Shared pieces of the gRPC servicers: running a block call and translating its errors.

Catalogue errors become a gRPC status with the catalogue code in a
``google.rpc.ErrorInfo`` detail, which the Dapr SDK's ``DaprGrpcError`` decodes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from daprlite import errors

log = logging.getLogger("daprlite.grpc")

T = TypeVar("T")


def status_for(exc: errors.APIError) -> grpc.Status:
    code = exc.grpc_status
    status = status_pb2.Status(code=code.value[0], message=exc.message)
    info = error_details_pb2.ErrorInfo(
        reason=exc.entry.reason or exc.code, domain="dapr.io", metadata=exc.metadata
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status.details.append(detail)
    return rpc_status.to_status(status)


async def call(context: grpc.aio.ServicerContext, work: Callable[[], Awaitable[T]]) -> T:
    """Run one block call, translating catalogue errors into a gRPC status."""
    try:
        return await work()
    except errors.APIError as exc:
        await context.abort_with_status(status_for(exc))
    except Exception:
        log.exception("unexpected error in gRPC call")
        await context.abort_with_status(status_for(errors.INTERNAL("internal error")))
    raise AssertionError("unreachable: abort raises")
