# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from google.protobuf import empty_pb2 as _empty_pb2
from daprlite_client._proto.dapr.proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListInputBindingsResponse(_message.Message):
    __slots__ = ("bindings",)
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    bindings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bindings: _Optional[_Iterable[str]] = ...) -> None: ...

class BindingEventRequest(_message.Message):
    __slots__ = ("name", "data", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BindingEventResponse(_message.Message):
    __slots__ = ("store_name", "states", "to", "data", "concurrency")
    class BindingEventConcurrency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SEQUENTIAL: _ClassVar[BindingEventResponse.BindingEventConcurrency]
        PARALLEL: _ClassVar[BindingEventResponse.BindingEventConcurrency]
    SEQUENTIAL: BindingEventResponse.BindingEventConcurrency
    PARALLEL: BindingEventResponse.BindingEventConcurrency
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    states: _containers.RepeatedCompositeFieldContainer[_common_pb2.StateItem]
    to: _containers.RepeatedScalarFieldContainer[str]
    data: bytes
    concurrency: BindingEventResponse.BindingEventConcurrency
    def __init__(self, store_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.StateItem, _Mapping]]] = ..., to: _Optional[_Iterable[str]] = ..., data: _Optional[bytes] = ..., concurrency: _Optional[_Union[BindingEventResponse.BindingEventConcurrency, str]] = ...) -> None: ...

class HealthCheckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
