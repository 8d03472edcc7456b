"""A raw gRPC app (the SDK's generated AppCallback stubs) that answers each
input-binding event with Dapr's response action: send ``data`` to the output
bindings listed in ``to``. Env: APP_PORT, BINDING (input), TO (comma list).
"""

from __future__ import annotations

import os
from concurrent import futures

import grpc
from dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc


class App(appcallback_pb2_grpc.AppCallbackServicer):
    def ListInputBindings(self, request, context):
        return appcallback_pb2.ListInputBindingsResponse(bindings=[os.environ["BINDING"]])

    def OnBindingEvent(self, request, context):
        return appcallback_pb2.BindingEventResponse(
            to=os.environ["TO"].split(","), data=b'{"forwarded": true}'
        )


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
appcallback_pb2_grpc.add_AppCallbackServicer_to_server(App(), server)
server.add_insecure_port(f"127.0.0.1:{os.environ['APP_PORT']}")
server.start()
server.wait_for_termination()
