# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from daprlite_client._proto.dapr.proto.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStateRequest(_message.Message):
    __slots__ = ("store_name", "key", "consistency", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    key: str
    consistency: _common_pb2.StateOptions.StateConsistency
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, store_name: _Optional[str] = ..., key: _Optional[str] = ..., consistency: _Optional[_Union[_common_pb2.StateOptions.StateConsistency, str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("data", "etag", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATA_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    etag: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, data: _Optional[bytes] = ..., etag: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetBulkStateRequest(_message.Message):
    __slots__ = ("store_name", "keys", "parallelism", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    parallelism: int
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, store_name: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., parallelism: _Optional[int] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetBulkStateResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BulkStateItem]
    def __init__(self, items: _Optional[_Iterable[_Union[BulkStateItem, _Mapping]]] = ...) -> None: ...

class BulkStateItem(_message.Message):
    __slots__ = ("key", "data", "etag", "error", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    data: bytes
    etag: str
    error: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, key: _Optional[str] = ..., data: _Optional[bytes] = ..., etag: _Optional[str] = ..., error: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SaveStateRequest(_message.Message):
    __slots__ = ("store_name", "states")
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    states: _containers.RepeatedCompositeFieldContainer[_common_pb2.StateItem]
    def __init__(self, store_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.StateItem, _Mapping]]] = ...) -> None: ...

class DeleteStateRequest(_message.Message):
    __slots__ = ("store_name", "key", "etag", "options", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    key: str
    etag: _common_pb2.Etag
    options: _common_pb2.StateOptions
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, store_name: _Optional[str] = ..., key: _Optional[str] = ..., etag: _Optional[_Union[_common_pb2.Etag, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.StateOptions, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteBulkStateRequest(_message.Message):
    __slots__ = ("store_name", "states")
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    states: _containers.RepeatedCompositeFieldContainer[_common_pb2.StateItem]
    def __init__(self, store_name: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_common_pb2.StateItem, _Mapping]]] = ...) -> None: ...

class TransactionalStateOperation(_message.Message):
    __slots__ = ("operationType", "request")
    OPERATIONTYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    operationType: str
    request: _common_pb2.StateItem
    def __init__(self, operationType: _Optional[str] = ..., request: _Optional[_Union[_common_pb2.StateItem, _Mapping]] = ...) -> None: ...

class ExecuteStateTransactionRequest(_message.Message):
    __slots__ = ("storeName", "operations", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORENAME_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    storeName: str
    operations: _containers.RepeatedCompositeFieldContainer[TransactionalStateOperation]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, storeName: _Optional[str] = ..., operations: _Optional[_Iterable[_Union[TransactionalStateOperation, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QueryStateRequest(_message.Message):
    __slots__ = ("store_name", "query", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STORE_NAME_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    store_name: str
    query: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, store_name: _Optional[str] = ..., query: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class QueryStateItem(_message.Message):
    __slots__ = ("key", "data", "etag", "error")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    key: str
    data: bytes
    etag: str
    error: str
    def __init__(self, key: _Optional[str] = ..., data: _Optional[bytes] = ..., etag: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class QueryStateResponse(_message.Message):
    __slots__ = ("results", "token", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[QueryStateItem]
    token: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, results: _Optional[_Iterable[_Union[QueryStateItem, _Mapping]]] = ..., token: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...
