# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PubsubSubscriptionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[PubsubSubscriptionType]
    DECLARATIVE: _ClassVar[PubsubSubscriptionType]
    PROGRAMMATIC: _ClassVar[PubsubSubscriptionType]
    STREAMING: _ClassVar[PubsubSubscriptionType]
UNKNOWN: PubsubSubscriptionType
DECLARATIVE: PubsubSubscriptionType
PROGRAMMATIC: PubsubSubscriptionType
STREAMING: PubsubSubscriptionType

class GetMetadataRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetadataResponse(_message.Message):
    __slots__ = ("id", "active_actors_count", "registered_components", "extended_metadata", "subscriptions", "http_endpoints", "app_connection_properties", "runtime_version", "enabled_features", "actor_runtime", "scheduler", "workflows", "mcp_servers", "workflow_access_policies", "resiliencies")
    class ExtendedMetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ACTORS_COUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    EXTENDED_METADATA_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    HTTP_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    APP_CONNECTION_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ACTOR_RUNTIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    MCP_SERVERS_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ACCESS_POLICIES_FIELD_NUMBER: _ClassVar[int]
    RESILIENCIES_FIELD_NUMBER: _ClassVar[int]
    id: str
    active_actors_count: _containers.RepeatedCompositeFieldContainer[ActiveActorsCount]
    registered_components: _containers.RepeatedCompositeFieldContainer[RegisteredComponents]
    extended_metadata: _containers.ScalarMap[str, str]
    subscriptions: _containers.RepeatedCompositeFieldContainer[PubsubSubscription]
    http_endpoints: _containers.RepeatedCompositeFieldContainer[MetadataHTTPEndpoint]
    app_connection_properties: AppConnectionProperties
    runtime_version: str
    enabled_features: _containers.RepeatedScalarFieldContainer[str]
    actor_runtime: ActorRuntime
    scheduler: MetadataScheduler
    workflows: MetadataWorkflows
    mcp_servers: _containers.RepeatedCompositeFieldContainer[MetadataMCPServer]
    workflow_access_policies: _containers.RepeatedCompositeFieldContainer[MetadataWorkflowAccessPolicy]
    resiliencies: _containers.RepeatedCompositeFieldContainer[MetadataResiliency]
    def __init__(self, id: _Optional[str] = ..., active_actors_count: _Optional[_Iterable[_Union[ActiveActorsCount, _Mapping]]] = ..., registered_components: _Optional[_Iterable[_Union[RegisteredComponents, _Mapping]]] = ..., extended_metadata: _Optional[_Mapping[str, str]] = ..., subscriptions: _Optional[_Iterable[_Union[PubsubSubscription, _Mapping]]] = ..., http_endpoints: _Optional[_Iterable[_Union[MetadataHTTPEndpoint, _Mapping]]] = ..., app_connection_properties: _Optional[_Union[AppConnectionProperties, _Mapping]] = ..., runtime_version: _Optional[str] = ..., enabled_features: _Optional[_Iterable[str]] = ..., actor_runtime: _Optional[_Union[ActorRuntime, _Mapping]] = ..., scheduler: _Optional[_Union[MetadataScheduler, _Mapping]] = ..., workflows: _Optional[_Union[MetadataWorkflows, _Mapping]] = ..., mcp_servers: _Optional[_Iterable[_Union[MetadataMCPServer, _Mapping]]] = ..., workflow_access_policies: _Optional[_Iterable[_Union[MetadataWorkflowAccessPolicy, _Mapping]]] = ..., resiliencies: _Optional[_Iterable[_Union[MetadataResiliency, _Mapping]]] = ...) -> None: ...

class ActiveActorsCount(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class RegisteredComponents(_message.Message):
    __slots__ = ("name", "type", "version", "capabilities")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class MetadataHTTPEndpoint(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MetadataMCPServer(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MetadataWorkflowAccessPolicy(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MetadataResiliency(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class MetadataScheduler(_message.Message):
    __slots__ = ("connected_addresses",)
    CONNECTED_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    connected_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, connected_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class MetadataWorkflows(_message.Message):
    __slots__ = ("connected_workers",)
    CONNECTED_WORKERS_FIELD_NUMBER: _ClassVar[int]
    connected_workers: int
    def __init__(self, connected_workers: _Optional[int] = ...) -> None: ...

class AppConnectionProperties(_message.Message):
    __slots__ = ("port", "protocol", "channel_address", "max_concurrency", "health")
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    port: int
    protocol: str
    channel_address: str
    max_concurrency: int
    health: AppConnectionHealthProperties
    def __init__(self, port: _Optional[int] = ..., protocol: _Optional[str] = ..., channel_address: _Optional[str] = ..., max_concurrency: _Optional[int] = ..., health: _Optional[_Union[AppConnectionHealthProperties, _Mapping]] = ...) -> None: ...

class AppConnectionHealthProperties(_message.Message):
    __slots__ = ("health_check_path", "health_probe_interval", "health_probe_timeout", "health_threshold")
    HEALTH_CHECK_PATH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    HEALTH_PROBE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    health_check_path: str
    health_probe_interval: str
    health_probe_timeout: str
    health_threshold: int
    def __init__(self, health_check_path: _Optional[str] = ..., health_probe_interval: _Optional[str] = ..., health_probe_timeout: _Optional[str] = ..., health_threshold: _Optional[int] = ...) -> None: ...

class ActorRuntime(_message.Message):
    __slots__ = ("runtime_status", "active_actors", "host_ready", "placement")
    class ActorRuntimeStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INITIALIZING: _ClassVar[ActorRuntime.ActorRuntimeStatus]
        DISABLED: _ClassVar[ActorRuntime.ActorRuntimeStatus]
        RUNNING: _ClassVar[ActorRuntime.ActorRuntimeStatus]
    INITIALIZING: ActorRuntime.ActorRuntimeStatus
    DISABLED: ActorRuntime.ActorRuntimeStatus
    RUNNING: ActorRuntime.ActorRuntimeStatus
    RUNTIME_STATUS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ACTORS_FIELD_NUMBER: _ClassVar[int]
    HOST_READY_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    runtime_status: ActorRuntime.ActorRuntimeStatus
    active_actors: _containers.RepeatedCompositeFieldContainer[ActiveActorsCount]
    host_ready: bool
    placement: str
    def __init__(self, runtime_status: _Optional[_Union[ActorRuntime.ActorRuntimeStatus, str]] = ..., active_actors: _Optional[_Iterable[_Union[ActiveActorsCount, _Mapping]]] = ..., host_ready: _Optional[bool] = ..., placement: _Optional[str] = ...) -> None: ...

class PubsubSubscription(_message.Message):
    __slots__ = ("pubsub_name", "topic", "metadata", "rules", "dead_letter_topic", "type")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PUBSUB_NAME_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTER_TOPIC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    pubsub_name: str
    topic: str
    metadata: _containers.ScalarMap[str, str]
    rules: PubsubSubscriptionRules
    dead_letter_topic: str
    type: PubsubSubscriptionType
    def __init__(self, pubsub_name: _Optional[str] = ..., topic: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., rules: _Optional[_Union[PubsubSubscriptionRules, _Mapping]] = ..., dead_letter_topic: _Optional[str] = ..., type: _Optional[_Union[PubsubSubscriptionType, str]] = ...) -> None: ...

class PubsubSubscriptionRules(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[PubsubSubscriptionRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[PubsubSubscriptionRule, _Mapping]]] = ...) -> None: ...

class PubsubSubscriptionRule(_message.Message):
    __slots__ = ("match", "path")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    match: str
    path: str
    def __init__(self, match: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class SetMetadataRequest(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
