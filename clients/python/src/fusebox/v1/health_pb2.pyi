from fusebox.v1 import breaker_pb2 as _breaker_pb2
from fusebox.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATUS_UNSPECIFIED: _ClassVar[HealthStatus]
    HEALTH_STATUS_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_DEGRADED: _ClassVar[HealthStatus]
    HEALTH_STATUS_CRITICAL: _ClassVar[HealthStatus]
HEALTH_STATUS_UNSPECIFIED: HealthStatus
HEALTH_STATUS_HEALTHY: HealthStatus
HEALTH_STATUS_DEGRADED: HealthStatus
HEALTH_STATUS_CRITICAL: HealthStatus

class GetFleetHealthRequest(_message.Message):
    __slots__ = ("registry",)
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    registry: str
    def __init__(self, registry: _Optional[str] = ...) -> None: ...

class HealthReason(_message.Message):
    __slots__ = ("code", "status", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    status: HealthStatus
    message: str
    def __init__(self, code: _Optional[str] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., message: _Optional[str] = ...) -> None: ...

class BreakerHealth(_message.Message):
    __slots__ = ("breaker", "state", "status", "reasons", "calls", "failures", "recent_trips", "not_passing_since_ms")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    RECENT_TRIPS_FIELD_NUMBER: _ClassVar[int]
    NOT_PASSING_SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    state: _breaker_pb2.BreakerState
    status: HealthStatus
    reasons: _containers.RepeatedCompositeFieldContainer[HealthReason]
    calls: int
    failures: int
    recent_trips: int
    not_passing_since_ms: int
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., state: _Optional[_Union[_breaker_pb2.BreakerState, str]] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., reasons: _Optional[_Iterable[_Union[HealthReason, _Mapping]]] = ..., calls: _Optional[int] = ..., failures: _Optional[int] = ..., recent_trips: _Optional[int] = ..., not_passing_since_ms: _Optional[int] = ...) -> None: ...

class RegistryHealth(_message.Message):
    __slots__ = ("registry", "status", "healthy", "degraded", "critical", "breakers")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    registry: str
    status: HealthStatus
    healthy: int
    degraded: int
    critical: int
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerHealth]
    def __init__(self, registry: _Optional[str] = ..., status: _Optional[_Union[HealthStatus, str]] = ..., healthy: _Optional[int] = ..., degraded: _Optional[int] = ..., critical: _Optional[int] = ..., breakers: _Optional[_Iterable[_Union[BreakerHealth, _Mapping]]] = ...) -> None: ...

class FleetHealth(_message.Message):
    __slots__ = ("status", "reasons", "registries", "local_mode_clients", "store_available", "replicas_serving", "replicas", "at_ms", "answered_by")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_MODE_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    STORE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_SERVING_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    status: HealthStatus
    reasons: _containers.RepeatedCompositeFieldContainer[HealthReason]
    registries: _containers.RepeatedCompositeFieldContainer[RegistryHealth]
    local_mode_clients: int
    store_available: bool
    replicas_serving: int
    replicas: int
    at_ms: int
    answered_by: str
    def __init__(self, status: _Optional[_Union[HealthStatus, str]] = ..., reasons: _Optional[_Iterable[_Union[HealthReason, _Mapping]]] = ..., registries: _Optional[_Iterable[_Union[RegistryHealth, _Mapping]]] = ..., local_mode_clients: _Optional[int] = ..., store_available: _Optional[bool] = ..., replicas_serving: _Optional[int] = ..., replicas: _Optional[int] = ..., at_ms: _Optional[int] = ..., answered_by: _Optional[str] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("limit", "rule", "subject")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    rule: str
    subject: str
    def __init__(self, limit: _Optional[int] = ..., rule: _Optional[str] = ..., subject: _Optional[str] = ...) -> None: ...

class AlertDelivery(_message.Message):
    __slots__ = ("sink", "state", "attempts", "error")
    SINK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    sink: str
    state: str
    attempts: int
    error: str
    def __init__(self, sink: _Optional[str] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class AlertEntry(_message.Message):
    __slots__ = ("id", "status", "rule", "kind", "severity", "breaker", "summary", "started_at_ms", "at_ms", "suppressed_triggers", "deliveries")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    id: int
    status: str
    rule: str
    kind: str
    severity: str
    breaker: _common_pb2.BreakerRef
    summary: str
    started_at_ms: int
    at_ms: int
    suppressed_triggers: int
    deliveries: _containers.RepeatedCompositeFieldContainer[AlertDelivery]
    def __init__(self, id: _Optional[int] = ..., status: _Optional[str] = ..., rule: _Optional[str] = ..., kind: _Optional[str] = ..., severity: _Optional[str] = ..., breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., summary: _Optional[str] = ..., started_at_ms: _Optional[int] = ..., at_ms: _Optional[int] = ..., suppressed_triggers: _Optional[int] = ..., deliveries: _Optional[_Iterable[_Union[AlertDelivery, _Mapping]]] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts", "enabled")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[AlertEntry]
    enabled: bool
    def __init__(self, alerts: _Optional[_Iterable[_Union[AlertEntry, _Mapping]]] = ..., enabled: _Optional[bool] = ...) -> None: ...
