from fusebox.v1 import breaker_pb2 as _breaker_pb2
from fusebox.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_ACTION_UNSPECIFIED: _ClassVar[AuditAction]
    AUDIT_ACTION_FORCE_OPEN: _ClassVar[AuditAction]
    AUDIT_ACTION_FORCE_CLOSE: _ClassVar[AuditAction]
    AUDIT_ACTION_DISABLE: _ClassVar[AuditAction]
    AUDIT_ACTION_SHADOW: _ClassVar[AuditAction]
    AUDIT_ACTION_RESET: _ClassVar[AuditAction]
    AUDIT_ACTION_OVERRIDE_EXPIRED: _ClassVar[AuditAction]
    AUDIT_ACTION_PUT_POLICY: _ClassVar[AuditAction]
    AUDIT_ACTION_DELETE_POLICY: _ClassVar[AuditAction]
    AUDIT_ACTION_CONNECTION_REFUSED: _ClassVar[AuditAction]
    AUDIT_ACTION_LIST_AUDIT: _ClassVar[AuditAction]
    AUDIT_ACTION_GET_CLUSTER_STATUS: _ClassVar[AuditAction]
AUDIT_ACTION_UNSPECIFIED: AuditAction
AUDIT_ACTION_FORCE_OPEN: AuditAction
AUDIT_ACTION_FORCE_CLOSE: AuditAction
AUDIT_ACTION_DISABLE: AuditAction
AUDIT_ACTION_SHADOW: AuditAction
AUDIT_ACTION_RESET: AuditAction
AUDIT_ACTION_OVERRIDE_EXPIRED: AuditAction
AUDIT_ACTION_PUT_POLICY: AuditAction
AUDIT_ACTION_DELETE_POLICY: AuditAction
AUDIT_ACTION_CONNECTION_REFUSED: AuditAction
AUDIT_ACTION_LIST_AUDIT: AuditAction
AUDIT_ACTION_GET_CLUSTER_STATUS: AuditAction

class OverrideRequest(_message.Message):
    __slots__ = ("breaker", "reason", "duration_ms", "policy")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    reason: str
    duration_ms: int
    policy: str
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., reason: _Optional[str] = ..., duration_ms: _Optional[int] = ..., policy: _Optional[str] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("breaker", "reason")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    reason: str
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class AdminActionResponse(_message.Message):
    __slots__ = ("before", "after", "audit_id")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    before: _breaker_pb2.BreakerStatus
    after: _breaker_pb2.BreakerStatus
    audit_id: int
    def __init__(self, before: _Optional[_Union[_breaker_pb2.BreakerStatus, _Mapping]] = ..., after: _Optional[_Union[_breaker_pb2.BreakerStatus, _Mapping]] = ..., audit_id: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("id", "at_ms", "actor", "action", "breaker", "policy", "reason", "allowed", "denied_reason", "state_before", "state_after", "duration_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DENIED_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    STATE_AFTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    at_ms: int
    actor: _common_pb2.PeerIdentity
    action: AuditAction
    breaker: _common_pb2.BreakerRef
    policy: str
    reason: str
    allowed: bool
    denied_reason: str
    state_before: _breaker_pb2.BreakerState
    state_after: _breaker_pb2.BreakerState
    duration_ms: int
    def __init__(self, id: _Optional[int] = ..., at_ms: _Optional[int] = ..., actor: _Optional[_Union[_common_pb2.PeerIdentity, _Mapping]] = ..., action: _Optional[_Union[AuditAction, str]] = ..., breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., policy: _Optional[str] = ..., reason: _Optional[str] = ..., allowed: _Optional[bool] = ..., denied_reason: _Optional[str] = ..., state_before: _Optional[_Union[_breaker_pb2.BreakerState, str]] = ..., state_after: _Optional[_Union[_breaker_pb2.BreakerState, str]] = ..., duration_ms: _Optional[int] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since_ms", "until_ms", "registry", "breaker_prefix", "actions", "denied_only", "limit", "before_id")
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    BREAKER_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DENIED_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    since_ms: int
    until_ms: int
    registry: str
    breaker_prefix: str
    actions: _containers.RepeatedScalarFieldContainer[AuditAction]
    denied_only: bool
    limit: int
    before_id: int
    def __init__(self, since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., registry: _Optional[str] = ..., breaker_prefix: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[AuditAction, str]]] = ..., denied_only: _Optional[bool] = ..., limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("mode", "store", "leader_id", "replicas", "etcd_members", "answered_by", "at_ms")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ETCD_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    store: str
    leader_id: str
    replicas: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    etcd_members: _containers.RepeatedCompositeFieldContainer[EtcdMemberStatus]
    answered_by: str
    at_ms: int
    def __init__(self, mode: _Optional[str] = ..., store: _Optional[str] = ..., leader_id: _Optional[str] = ..., replicas: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., etcd_members: _Optional[_Iterable[_Union[EtcdMemberStatus, _Mapping]]] = ..., answered_by: _Optional[str] = ..., at_ms: _Optional[int] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("id", "address", "version", "leader", "started_at_ms", "applied_revision", "lag_revisions", "last_heartbeat_ms", "serving")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    LAG_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_MS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    version: str
    leader: bool
    started_at_ms: int
    applied_revision: int
    lag_revisions: int
    last_heartbeat_ms: int
    serving: bool
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., leader: _Optional[bool] = ..., started_at_ms: _Optional[int] = ..., applied_revision: _Optional[int] = ..., lag_revisions: _Optional[int] = ..., last_heartbeat_ms: _Optional[int] = ..., serving: _Optional[bool] = ...) -> None: ...

class EtcdMemberStatus(_message.Message):
    __slots__ = ("endpoint", "reachable", "leader", "revision", "db_size_bytes", "error")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DB_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    reachable: bool
    leader: bool
    revision: int
    db_size_bytes: int
    error: str
    def __init__(self, endpoint: _Optional[str] = ..., reachable: _Optional[bool] = ..., leader: _Optional[bool] = ..., revision: _Optional[int] = ..., db_size_bytes: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...
