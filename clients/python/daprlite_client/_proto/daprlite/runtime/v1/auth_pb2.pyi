# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ValidateTokenRequest(_message.Message):
    __slots__ = ("component_name", "token")
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    token: str
    def __init__(self, component_name: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class ValidateTokenResponse(_message.Message):
    __slots__ = ("claims_json",)
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    claims_json: bytes
    def __init__(self, claims_json: _Optional[bytes] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("component_name", "token", "subject", "claims_json", "ttl_in_seconds")
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    TTL_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    token: str
    subject: str
    claims_json: bytes
    ttl_in_seconds: int
    def __init__(self, component_name: _Optional[str] = ..., token: _Optional[str] = ..., subject: _Optional[str] = ..., claims_json: _Optional[bytes] = ..., ttl_in_seconds: _Optional[int] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("component_name", "session_id")
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    session_id: str
    def __init__(self, component_name: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class RefreshSessionRequest(_message.Message):
    __slots__ = ("component_name", "session_id", "ttl_in_seconds")
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    session_id: str
    ttl_in_seconds: int
    def __init__(self, component_name: _Optional[str] = ..., session_id: _Optional[str] = ..., ttl_in_seconds: _Optional[int] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("session_id", "subject", "claims_json", "created_at", "expires_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    subject: str
    claims_json: bytes
    created_at: int
    expires_at: int
    def __init__(self, session_id: _Optional[str] = ..., subject: _Optional[str] = ..., claims_json: _Optional[bytes] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ...) -> None: ...

class RevokeSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RevokeSubjectSessionsRequest(_message.Message):
    __slots__ = ("component_name", "subject")
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    subject: str
    def __init__(self, component_name: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class RevokeSubjectSessionsResponse(_message.Message):
    __slots__ = ("revoked",)
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    revoked: int
    def __init__(self, revoked: _Optional[int] = ...) -> None: ...
