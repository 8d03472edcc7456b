# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HTTPExtension(_message.Message):
    __slots__ = ("verb", "querystring")
    class Verb(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[HTTPExtension.Verb]
        GET: _ClassVar[HTTPExtension.Verb]
        HEAD: _ClassVar[HTTPExtension.Verb]
        POST: _ClassVar[HTTPExtension.Verb]
        PUT: _ClassVar[HTTPExtension.Verb]
        DELETE: _ClassVar[HTTPExtension.Verb]
        CONNECT: _ClassVar[HTTPExtension.Verb]
        OPTIONS: _ClassVar[HTTPExtension.Verb]
        TRACE: _ClassVar[HTTPExtension.Verb]
        PATCH: _ClassVar[HTTPExtension.Verb]
    NONE: HTTPExtension.Verb
    GET: HTTPExtension.Verb
    HEAD: HTTPExtension.Verb
    POST: HTTPExtension.Verb
    PUT: HTTPExtension.Verb
    DELETE: HTTPExtension.Verb
    CONNECT: HTTPExtension.Verb
    OPTIONS: HTTPExtension.Verb
    TRACE: HTTPExtension.Verb
    PATCH: HTTPExtension.Verb
    VERB_FIELD_NUMBER: _ClassVar[int]
    QUERYSTRING_FIELD_NUMBER: _ClassVar[int]
    verb: HTTPExtension.Verb
    querystring: str
    def __init__(self, verb: _Optional[_Union[HTTPExtension.Verb, str]] = ..., querystring: _Optional[str] = ...) -> None: ...

class InvokeRequest(_message.Message):
    __slots__ = ("method", "data", "content_type", "http_extension")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    HTTP_EXTENSION_FIELD_NUMBER: _ClassVar[int]
    method: str
    data: _any_pb2.Any
    content_type: str
    http_extension: HTTPExtension
    def __init__(self, method: _Optional[str] = ..., data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., content_type: _Optional[str] = ..., http_extension: _Optional[_Union[HTTPExtension, _Mapping]] = ...) -> None: ...

class InvokeResponse(_message.Message):
    __slots__ = ("data", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: _any_pb2.Any
    content_type: str
    def __init__(self, data: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., content_type: _Optional[str] = ...) -> None: ...

class StateItem(_message.Message):
    __slots__ = ("key", "value", "etag", "metadata", "options")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    etag: Etag
    metadata: _containers.ScalarMap[str, str]
    options: StateOptions
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., etag: _Optional[_Union[Etag, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., options: _Optional[_Union[StateOptions, _Mapping]] = ...) -> None: ...

class Etag(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: str
    def __init__(self, value: _Optional[str] = ...) -> None: ...

class StateOptions(_message.Message):
    __slots__ = ("concurrency", "consistency")
    class StateConcurrency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONCURRENCY_UNSPECIFIED: _ClassVar[StateOptions.StateConcurrency]
        CONCURRENCY_FIRST_WRITE: _ClassVar[StateOptions.StateConcurrency]
        CONCURRENCY_LAST_WRITE: _ClassVar[StateOptions.StateConcurrency]
    CONCURRENCY_UNSPECIFIED: StateOptions.StateConcurrency
    CONCURRENCY_FIRST_WRITE: StateOptions.StateConcurrency
    CONCURRENCY_LAST_WRITE: StateOptions.StateConcurrency
    class StateConsistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CONSISTENCY_UNSPECIFIED: _ClassVar[StateOptions.StateConsistency]
        CONSISTENCY_EVENTUAL: _ClassVar[StateOptions.StateConsistency]
        CONSISTENCY_STRONG: _ClassVar[StateOptions.StateConsistency]
    CONSISTENCY_UNSPECIFIED: StateOptions.StateConsistency
    CONSISTENCY_EVENTUAL: StateOptions.StateConsistency
    CONSISTENCY_STRONG: StateOptions.StateConsistency
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    concurrency: StateOptions.StateConcurrency
    consistency: StateOptions.StateConsistency
    def __init__(self, concurrency: _Optional[_Union[StateOptions.StateConcurrency, str]] = ..., consistency: _Optional[_Union[StateOptions.StateConsistency, str]] = ...) -> None: ...
