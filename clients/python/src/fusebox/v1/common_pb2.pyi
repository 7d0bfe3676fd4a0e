from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreakerRef(_message.Message):
    __slots__ = ("registry", "name")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name: str
    def __init__(self, registry: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ErrorDetails(_message.Message):
    __slots__ = ("violations", "missing_role", "current_version")
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    MISSING_ROLE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    missing_role: str
    current_version: int
    def __init__(self, violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., missing_role: _Optional[str] = ..., current_version: _Optional[int] = ...) -> None: ...

class PeerIdentity(_message.Message):
    __slots__ = ("common_name", "dns_names", "uris", "fingerprint_sha256", "roles")
    COMMON_NAME_FIELD_NUMBER: _ClassVar[int]
    DNS_NAMES_FIELD_NUMBER: _ClassVar[int]
    URIS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    common_name: str
    dns_names: _containers.RepeatedScalarFieldContainer[str]
    uris: _containers.RepeatedScalarFieldContainer[str]
    fingerprint_sha256: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, common_name: _Optional[str] = ..., dns_names: _Optional[_Iterable[str]] = ..., uris: _Optional[_Iterable[str]] = ..., fingerprint_sha256: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class ExpectedVersion(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...
