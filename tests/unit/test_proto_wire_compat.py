"""Wire compatibility of daprlite's own .proto files with the official Dapr SDK.

These tests sit between ``proto/`` (our hand-written subset of Dapr's schema)
and every gRPC path of the sidecar: if a field number, type or JSON name drifts
from Dapr's, SDK clients would silently read or write the wrong field. The
official ``dapr`` package ships Dapr's own descriptors, so it is the reference
here. The tests also guard the generation pipeline: committed stubs are fresh,
and our modules coexist with the SDK's in one process.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType

import dapr.proto.runtime.v1.dapr_pb2  # noqa: F401  (loads every Dapr .proto into the default pool)
import grpc
import pytest
from dapr.proto.common.v1 import common_pb2 as sdk_common
from dapr.proto.runtime.v1 import appcallback_pb2 as sdk_appcallback
from dapr.proto.runtime.v1 import appcallback_pb2_grpc as sdk_appcallback_grpc
from dapr.proto.runtime.v1 import binding_pb2 as sdk_binding
from dapr.proto.runtime.v1 import secret_pb2 as sdk_secret
from dapr.proto.runtime.v1 import state_pb2 as sdk_state
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
    ServiceDescriptor,
)

import daprlite._proto

REPO = Path(__file__).resolve().parents[2]

# The official SDK's descriptors are the reference for every comparison.
SDK_POOL = descriptor_pool.Default()

# Messages declared whole: every field Dapr has, not a subset. Most of our
# messages are whole today, but the generic test below only demands a subset;
# these must also not lose a field.
WHOLE_MESSAGES = (
    "dapr.proto.runtime.v1.InvokeBindingRequest",
    "dapr.proto.runtime.v1.InvokeBindingResponse",
    "dapr.proto.runtime.v1.GetSecretRequest",
    "dapr.proto.runtime.v1.GetSecretResponse",
    "dapr.proto.runtime.v1.GetBulkSecretRequest",
    "dapr.proto.runtime.v1.SecretResponse",
    "dapr.proto.runtime.v1.GetBulkSecretResponse",
    "dapr.proto.runtime.v1.ListInputBindingsResponse",
    "dapr.proto.runtime.v1.BindingEventRequest",
    "dapr.proto.runtime.v1.BindingEventResponse",
    "dapr.proto.runtime.v1.HealthCheckResponse",
    "dapr.proto.runtime.v1.InvokeServiceRequest",
    "dapr.proto.common.v1.InvokeRequest",
    "dapr.proto.common.v1.InvokeResponse",
    "dapr.proto.common.v1.HTTPExtension",
    "dapr.proto.runtime.v1.PublishEventRequest",
    "dapr.proto.runtime.v1.BulkPublishRequest",
    "dapr.proto.runtime.v1.BulkPublishRequestEntry",
    "dapr.proto.runtime.v1.BulkPublishResponse",
    "dapr.proto.runtime.v1.BulkPublishResponseFailedEntry",
    "dapr.proto.runtime.v1.SubscribeTopicEventsRequestAlpha1",
    "dapr.proto.runtime.v1.SubscribeTopicEventsRequestInitialAlpha1",
    "dapr.proto.runtime.v1.SubscribeTopicEventsRequestProcessedAlpha1",
    "dapr.proto.runtime.v1.SubscribeTopicEventsResponseAlpha1",
    "dapr.proto.runtime.v1.TopicEventRequest",
    "dapr.proto.runtime.v1.TopicEventResponse",
    "dapr.proto.runtime.v1.TopicEventCERequest",
    "dapr.proto.runtime.v1.TopicEventBulkRequestEntry",
    "dapr.proto.runtime.v1.TopicEventBulkRequest",
    "dapr.proto.runtime.v1.TopicEventBulkResponseEntry",
    "dapr.proto.runtime.v1.TopicEventBulkResponse",
    "dapr.proto.runtime.v1.ListTopicSubscriptionsResponse",
    "dapr.proto.runtime.v1.TopicSubscription",
    "dapr.proto.runtime.v1.TopicRoutes",
    "dapr.proto.runtime.v1.TopicRule",
    "dapr.proto.runtime.v1.BulkSubscribeConfig",
    "dapr.proto.runtime.v1.PubsubSubscription",
    "dapr.proto.runtime.v1.PubsubSubscriptionRules",
    "dapr.proto.runtime.v1.PubsubSubscriptionRule",
)

# The sidecar-to-app services and the RPCs of each that daprlite calls. The
# SDK's services have more (pub/sub, jobs); ours declare exactly these.
APP_SERVICES = {
    "AppCallback": {
        "OnInvoke",
        "ListInputBindings",
        "OnBindingEvent",
        "ListTopicSubscriptions",
        "OnTopicEvent",
        "OnBulkTopicEvent",
    },
    "AppCallbackHealthCheck": {"HealthCheck"},
    "AppCallbackAlpha": {"OnBulkTopicEventAlpha1"},
}


def our_modules() -> list[ModuleType]:
    """Every generated *_pb2 module under daprlite._proto."""
    found = [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(daprlite._proto.__path__, "daprlite._proto.")
        if info.name.endswith("_pb2")
    ]
    assert found, "no generated modules under daprlite/_proto; run scripts/gen_proto.py"
    return found


def our_files() -> list[FileDescriptor]:
    """Our Dapr-compatible files; daprlite's own API (package daprlite.*) has no SDK twin."""
    return [m.DESCRIPTOR for m in our_modules() if m.DESCRIPTOR.package.startswith("dapr.")]


def walk_messages(messages: list[Descriptor]) -> Iterator[Descriptor]:
    for message in messages:
        yield message
        yield from walk_messages(list(message.nested_types))


def our_messages() -> list[Descriptor]:
    return [
        message
        for file in our_files()
        for message in walk_messages(list(file.message_types_by_name.values()))
    ]


def our_enums() -> list[EnumDescriptor]:
    enums: list[EnumDescriptor] = []
    for file in our_files():
        enums.extend(file.enum_types_by_name.values())
        for message in walk_messages(list(file.message_types_by_name.values())):
            enums.extend(message.enum_types)
    return enums


def our_services() -> list[ServiceDescriptor]:
    return [service for file in our_files() for service in file.services_by_name.values()]


def field_signature(field: FieldDescriptor, proto: descriptor_pb2.FieldDescriptorProto) -> dict:
    """Everything about a field that shows on the wire or in JSON."""
    referenced = field.message_type or field.enum_type
    return {
        "number": field.number,
        "type": field.type,
        # `label` is only exposed on the proto form in protobuf 7.
        "label": descriptor_pb2.FieldDescriptorProto.Label.Name(proto.label),
        "proto3_optional": proto.proto3_optional,
        "type_name": referenced.full_name if referenced else "",
        "json_name": field.json_name,
    }


def field_signatures(message: Descriptor) -> dict[str, dict]:
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    protos = {f.name: f for f in proto.field}
    return {f.name: field_signature(f, protos[f.name]) for f in message.fields}


def test_our_descriptors_live_in_a_private_pool_not_the_default_one() -> None:
    from daprlite._proto._pool import POOL

    for file in our_files():
        assert file.pool is POOL, file.name
    # The default pool still answers with the SDK's descriptors, untouched.
    sdk_message = SDK_POOL.FindMessageTypeByName("dapr.proto.runtime.v1.GetStateRequest")
    assert sdk_message.file is sdk_state.DESCRIPTOR


@pytest.mark.parametrize("message", our_messages(), ids=lambda m: m.full_name)
def test_message_fields_match_the_sdk(message: Descriptor) -> None:
    try:
        sdk_message = SDK_POOL.FindMessageTypeByName(message.full_name)
    except KeyError:
        pytest.fail(f"the dapr SDK has no message named {message.full_name}")

    ours = field_signatures(message)
    theirs = field_signatures(sdk_message)
    for name, signature in ours.items():
        assert name in theirs, f"{message.full_name}.{name} does not exist in the SDK"
        assert signature == theirs[name], f"{message.full_name}.{name} differs from the SDK"


@pytest.mark.parametrize("enum", our_enums(), ids=lambda e: e.full_name)
def test_enum_values_match_the_sdk(enum: EnumDescriptor) -> None:
    sdk_enum = SDK_POOL.FindEnumTypeByName(enum.full_name)
    ours = {value.name: value.number for value in enum.values}
    theirs = {value.name: value.number for value in sdk_enum.values}
    assert ours == theirs


@pytest.mark.parametrize("service", our_services(), ids=lambda s: s.full_name)
def test_service_methods_match_the_sdk(service: ServiceDescriptor) -> None:
    sdk_service = SDK_POOL.FindServiceByName(service.full_name)
    sdk_methods = {method.name: method for method in sdk_service.methods}
    for method in service.methods:
        assert method.name in sdk_methods, f"{service.full_name}/{method.name} not in the SDK"
        sdk_method = sdk_methods[method.name]
        assert (
            method.input_type.full_name,
            method.output_type.full_name,
            method.client_streaming,
            method.server_streaming,
        ) == (
            sdk_method.input_type.full_name,
            sdk_method.output_type.full_name,
            sdk_method.client_streaming,
            sdk_method.server_streaming,
        ), f"{service.full_name}/{method.name} differs from the SDK"


def test_dapr_service_declares_the_rpcs_daprlite_serves() -> None:
    from daprlite._proto.dapr.proto.runtime.v1 import dapr_pb2

    methods = {m.name for m in dapr_pb2.DESCRIPTOR.services_by_name["Dapr"].methods}
    assert {
        "PublishEvent",
        "BulkPublishEventAlpha1",
        "BulkPublishEvent",
        "SubscribeTopicEventsAlpha1",
        "InvokeService",
        "GetState",
        "GetBulkState",
        "SaveState",
        "QueryStateAlpha1",
        "DeleteState",
        "DeleteBulkState",
        "ExecuteStateTransaction",
        "InvokeBinding",
        "GetSecret",
        "GetBulkSecret",
        "GetMetadata",
        "SetMetadata",
        "Shutdown",
    } <= methods


@pytest.mark.parametrize("full_name", WHOLE_MESSAGES)
def test_whole_messages_have_every_sdk_field_and_enum_value(full_name: str) -> None:
    from daprlite._proto._pool import POOL

    try:
        ours = POOL.FindMessageTypeByName(full_name)
    except KeyError:
        pytest.fail(f"{full_name} is not declared under proto/")
    theirs = SDK_POOL.FindMessageTypeByName(full_name)
    assert field_signatures(ours) == field_signatures(theirs)
    assert {
        enum.name: {value.name: value.number for value in enum.values} for enum in ours.enum_types
    } == {
        enum.name: {value.name: value.number for value in enum.values} for enum in theirs.enum_types
    }
    assert ours.file.name == theirs.file.name, "declared in a different .proto file than Dapr's"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_callback_services_match_the_sdk_appcallback_module(name: str) -> None:
    from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2

    ours = appcallback_pb2.DESCRIPTOR.services_by_name[name]
    theirs = sdk_appcallback.DESCRIPTOR.services_by_name[name]
    assert ours.full_name == theirs.full_name == f"dapr.proto.runtime.v1.{name}"
    assert {method.name for method in ours.methods} == APP_SERVICES[name]
    sdk_methods = {method.name: method for method in theirs.methods}
    for method in ours.methods:
        assert method.name in sdk_methods, f"{name}/{method.name} not in the SDK"
        sdk_method = sdk_methods[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            sdk_method.input_type.full_name,
            sdk_method.output_type.full_name,
        ), f"{name}/{method.name} differs from the SDK"
        assert not (method.client_streaming or method.server_streaming)
        assert not (sdk_method.client_streaming or sdk_method.server_streaming)


def test_get_state_request_round_trips_between_ours_and_the_sdk() -> None:
    from daprlite._proto.dapr.proto.common.v1 import common_pb2
    from daprlite._proto.dapr.proto.runtime.v1 import state_pb2

    ours = state_pb2.GetStateRequest(
        store_name="statestore",
        key="order-1",
        consistency=common_pb2.StateOptions.CONSISTENCY_STRONG,
        metadata={"partitionKey": "p1"},
    )
    theirs = sdk_state.GetStateRequest.FromString(ours.SerializeToString())
    assert (theirs.store_name, theirs.key, theirs.consistency, dict(theirs.metadata)) == (
        "statestore",
        "order-1",
        2,
        {"partitionKey": "p1"},
    )

    theirs.key = "order-2"
    back = state_pb2.GetStateRequest.FromString(theirs.SerializeToString())
    assert back.key == "order-2"
    assert back.store_name == "statestore"
    assert back.consistency == common_pb2.StateOptions.CONSISTENCY_STRONG


def test_binding_messages_round_trip_between_ours_and_the_sdk() -> None:
    from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2, binding_pb2

    theirs = sdk_binding.InvokeBindingRequest(
        name="queue", data=b'"hi"', metadata={"ttlInSeconds": "60"}, operation="create"
    )
    ours = binding_pb2.InvokeBindingRequest.FromString(theirs.SerializeToString())
    assert (ours.name, ours.data, dict(ours.metadata), ours.operation) == (
        "queue",
        b'"hi"',
        {"ttlInSeconds": "60"},
        "create",
    )

    answer = binding_pb2.InvokeBindingResponse(data=b"ok", metadata={"id": "7"})
    back = sdk_binding.InvokeBindingResponse.FromString(answer.SerializeToString())
    assert (back.data, dict(back.metadata)) == (b"ok", {"id": "7"})

    # What an app built on the SDK answers to a binding event.
    app_answer = sdk_appcallback.BindingEventResponse(
        store_name="statestore",
        states=[sdk_common.StateItem(key="k", value=b"v", etag=sdk_common.Etag(value="3"))],
        to=["out-a", "out-b"],
        data=b'{"n":1}',
        concurrency=sdk_appcallback.BindingEventResponse.PARALLEL,
    )
    read = appcallback_pb2.BindingEventResponse.FromString(app_answer.SerializeToString())
    assert read.store_name == "statestore"
    assert [(s.key, s.value, s.etag.value) for s in read.states] == [("k", b"v", "3")]
    assert list(read.to) == ["out-a", "out-b"]
    assert read.data == b'{"n":1}'
    assert read.concurrency == appcallback_pb2.BindingEventResponse.PARALLEL == 1


def test_secret_messages_round_trip_between_ours_and_the_sdk() -> None:
    from daprlite._proto.dapr.proto.runtime.v1 import secret_pb2

    request = sdk_secret.GetSecretRequest(
        store_name="vault", key="db", metadata={"version_id": "2"}
    )
    ours = secret_pb2.GetSecretRequest.FromString(request.SerializeToString())
    assert (ours.store_name, ours.key, dict(ours.metadata)) == ("vault", "db", {"version_id": "2"})

    bulk = secret_pb2.GetBulkSecretResponse()
    bulk.data["db"].secrets.update({"user": "app", "password": "s3cret"})
    bulk.data["api"].secrets["token"] = "t"
    theirs = sdk_secret.GetBulkSecretResponse.FromString(bulk.SerializeToString())
    assert {name: dict(secret.secrets) for name, secret in theirs.data.items()} == {
        "db": {"user": "app", "password": "s3cret"},
        "api": {"token": "t"},
    }


class _SdkApp(
    sdk_appcallback_grpc.AppCallbackServicer, sdk_appcallback_grpc.AppCallbackHealthCheckServicer
):
    """A gRPC app written against the official SDK's generated servicers."""

    def ListInputBindings(self, request, context):
        return sdk_appcallback.ListInputBindingsResponse(bindings=["queue"])

    def OnBindingEvent(self, request, context):
        return sdk_appcallback.BindingEventResponse(
            to=["out"], data=request.data + b"!" + request.metadata["k"].encode()
        )

    def OnInvoke(self, request, context):
        reply = sdk_common.InvokeResponse(content_type="text/plain")
        reply.data.value = request.method.encode()
        return reply

    def HealthCheck(self, request, context):
        return sdk_appcallback.HealthCheckResponse()


def test_our_app_callback_stubs_call_an_sdk_app_over_grpc() -> None:
    from daprlite._proto.dapr.proto.common.v1 import common_pb2
    from daprlite._proto.dapr.proto.runtime.v1 import appcallback_pb2, appcallback_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    app = _SdkApp()
    sdk_appcallback_grpc.add_AppCallbackServicer_to_server(app, server)
    sdk_appcallback_grpc.add_AppCallbackHealthCheckServicer_to_server(app, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            callback = appcallback_pb2_grpc.AppCallbackStub(channel)
            health = appcallback_pb2_grpc.AppCallbackHealthCheckStub(channel)

            listed = callback.ListInputBindings(empty_pb2.Empty(), timeout=10)
            assert list(listed.bindings) == ["queue"]

            event = appcallback_pb2.BindingEventRequest(
                name="queue", data=b"x", metadata={"k": "v"}
            )
            answer = callback.OnBindingEvent(event, timeout=10)
            assert (list(answer.to), answer.data) == (["out"], b"x!v")

            invoked = callback.OnInvoke(common_pb2.InvokeRequest(method="orders"), timeout=10)
            assert (invoked.data.value, invoked.content_type) == (b"orders", "text/plain")

            reply = health.HealthCheck(empty_pb2.Empty(), timeout=10)
            assert isinstance(reply, appcallback_pb2.HealthCheckResponse)
    finally:
        server.stop(grace=None)


def test_optional_metadata_fields_keep_presence_across_the_wire() -> None:
    from dapr.proto.runtime.v1 import metadata_pb2 as sdk_metadata

    from daprlite._proto.dapr.proto.runtime.v1 import metadata_pb2

    ours = metadata_pb2.GetMetadataResponse(id="app")
    ours.workflows.SetInParent()
    theirs = sdk_metadata.GetMetadataResponse.FromString(ours.SerializeToString())
    # An empty-but-present `workflows` must stay distinguishable from an absent one.
    assert theirs.HasField("workflows")
    assert not theirs.HasField("scheduler")


@pytest.mark.parametrize(
    "imports",
    [
        (
            "daprlite._proto.dapr.proto.runtime.v1.dapr_pb2_grpc",
            "daprlite._proto.dapr.proto.runtime.v1.appcallback_pb2_grpc",
            "dapr.proto.runtime.v1.dapr_pb2",
            "dapr.proto.runtime.v1.appcallback_pb2_grpc",
        ),
        (
            "dapr.proto.runtime.v1.dapr_pb2",
            "dapr.proto.runtime.v1.appcallback_pb2_grpc",
            "daprlite._proto.dapr.proto.runtime.v1.dapr_pb2_grpc",
            "daprlite._proto.dapr.proto.runtime.v1.appcallback_pb2_grpc",
        ),
    ],
    ids=["ours-first", "sdk-first"],
)
def test_ours_and_the_sdk_import_together_in_either_order(imports: tuple[str, ...]) -> None:
    # A fresh interpreter, because this process has long since imported both.
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run(
        [sys.executable, "-W", "ignore::FutureWarning", "-c", code, *imports],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_generated_stubs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
