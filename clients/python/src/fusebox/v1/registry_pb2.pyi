from fusebox.v1 import common_pb2 as _common_pb2
from fusebox.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListRegistriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRegistriesResponse(_message.Message):
    __slots__ = ("registries",)
    REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    registries: _containers.RepeatedCompositeFieldContainer[_policy_pb2.RegistrySummary]
    def __init__(self, registries: _Optional[_Iterable[_Union[_policy_pb2.RegistrySummary, _Mapping]]] = ...) -> None: ...

class GetRegistryRequest(_message.Message):
    __slots__ = ("registry",)
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    registry: str
    def __init__(self, registry: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("registry", "name")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name: str
    def __init__(self, registry: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PutPolicyRequest(_message.Message):
    __slots__ = ("registry", "policy", "expected_version", "reason")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    registry: str
    policy: _policy_pb2.Policy
    expected_version: _common_pb2.ExpectedVersion
    reason: str
    def __init__(self, registry: _Optional[str] = ..., policy: _Optional[_Union[_policy_pb2.Policy, _Mapping]] = ..., expected_version: _Optional[_Union[_common_pb2.ExpectedVersion, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class PutPolicyResponse(_message.Message):
    __slots__ = ("record", "registry_version", "kind")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    record: _policy_pb2.PolicyRecord
    registry_version: int
    kind: _policy_pb2.ChangeKind
    def __init__(self, record: _Optional[_Union[_policy_pb2.PolicyRecord, _Mapping]] = ..., registry_version: _Optional[int] = ..., kind: _Optional[_Union[_policy_pb2.ChangeKind, str]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("registry", "name", "expected_version", "reason")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name: str
    expected_version: _common_pb2.ExpectedVersion
    reason: str
    def __init__(self, registry: _Optional[str] = ..., name: _Optional[str] = ..., expected_version: _Optional[_Union[_common_pb2.ExpectedVersion, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ("registry_version",)
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    registry_version: int
    def __init__(self, registry_version: _Optional[int] = ...) -> None: ...

class ValidatePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: _policy_pb2.Policy
    def __init__(self, policy: _Optional[_Union[_policy_pb2.Policy, _Mapping]] = ...) -> None: ...

class ValidatePolicyResponse(_message.Message):
    __slots__ = ("valid", "violations")
    VALID_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    violations: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldViolation]
    def __init__(self, valid: _Optional[bool] = ..., violations: _Optional[_Iterable[_Union[_common_pb2.FieldViolation, _Mapping]]] = ...) -> None: ...

class PolicyHistoryRequest(_message.Message):
    __slots__ = ("registry", "name", "after_version", "limit")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    AFTER_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name: str
    after_version: int
    limit: int
    def __init__(self, registry: _Optional[str] = ..., name: _Optional[str] = ..., after_version: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class PolicyHistoryResponse(_message.Message):
    __slots__ = ("changes", "truncated")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[_policy_pb2.PolicyChange]
    truncated: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[_policy_pb2.PolicyChange, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class WatchRegistryRequest(_message.Message):
    __slots__ = ("registry", "from_version")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    registry: str
    from_version: int
    def __init__(self, registry: _Optional[str] = ..., from_version: _Optional[int] = ...) -> None: ...

class RegistryEvent(_message.Message):
    __slots__ = ("snapshot", "change")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    snapshot: _policy_pb2.RegistrySnapshot
    change: _policy_pb2.PolicyChange
    def __init__(self, snapshot: _Optional[_Union[_policy_pb2.RegistrySnapshot, _Mapping]] = ..., change: _Optional[_Union[_policy_pb2.PolicyChange, _Mapping]] = ...) -> None: ...
