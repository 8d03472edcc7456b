# Post-processed by scripts/gen_proto.py for package root daprlite._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from google.protobuf import empty_pb2 as _empty_pb2
from daprlite._proto.dapr.proto.common.v1 import common_pb2 as _common_pb2
from daprlite._proto.dapr.proto.runtime.v1 import binding_pb2 as _binding_pb2
from daprlite._proto.dapr.proto.runtime.v1 import invoke_pb2 as _invoke_pb2
from daprlite._proto.dapr.proto.runtime.v1 import metadata_pb2 as _metadata_pb2
from daprlite._proto.dapr.proto.runtime.v1 import pubsub_pb2 as _pubsub_pb2
from daprlite._proto.dapr.proto.runtime.v1 import secret_pb2 as _secret_pb2
from daprlite._proto.dapr.proto.runtime.v1 import state_pb2 as _state_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
