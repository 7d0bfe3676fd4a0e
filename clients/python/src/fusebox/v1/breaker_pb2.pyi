from fusebox.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_FORCED_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_FORCED_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_DISABLED: _ClassVar[BreakerState]
    BREAKER_STATE_SHADOW: _ClassVar[BreakerState]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_SUCCESS: _ClassVar[Outcome]
    OUTCOME_FAILURE: _ClassVar[Outcome]
    OUTCOME_SLOW_SUCCESS: _ClassVar[Outcome]
    OUTCOME_SLOW_FAILURE: _ClassVar[Outcome]
    OUTCOME_IGNORED: _ClassVar[Outcome]

class ClientMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_MODE_UNSPECIFIED: _ClassVar[ClientMode]
    CLIENT_MODE_FLEET: _ClassVar[ClientMode]
    CLIENT_MODE_LOCAL: _ClassVar[ClientMode]
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState
BREAKER_STATE_FORCED_OPEN: BreakerState
BREAKER_STATE_FORCED_CLOSED: BreakerState
BREAKER_STATE_DISABLED: BreakerState
BREAKER_STATE_SHADOW: BreakerState
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_SUCCESS: Outcome
OUTCOME_FAILURE: Outcome
OUTCOME_SLOW_SUCCESS: Outcome
OUTCOME_SLOW_FAILURE: Outcome
OUTCOME_IGNORED: Outcome
CLIENT_MODE_UNSPECIFIED: ClientMode
CLIENT_MODE_FLEET: ClientMode
CLIENT_MODE_LOCAL: ClientMode

class OutcomeCounts(_message.Message):
    __slots__ = ("success", "failure", "slow_success", "slow_failure", "ignored")
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SLOW_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    SLOW_FAILURE_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    success: int
    failure: int
    slow_success: int
    slow_failure: int
    ignored: int
    def __init__(self, success: _Optional[int] = ..., failure: _Optional[int] = ..., slow_success: _Optional[int] = ..., slow_failure: _Optional[int] = ..., ignored: _Optional[int] = ...) -> None: ...

class ProbeResult(_message.Message):
    __slots__ = ("permit_id", "outcome")
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    permit_id: int
    outcome: Outcome
    def __init__(self, permit_id: _Optional[int] = ..., outcome: _Optional[_Union[Outcome, str]] = ...) -> None: ...

class BreakerOutcomes(_message.Message):
    __slots__ = ("breaker", "policy", "generation", "counts", "trailing_consecutive_failures", "probes")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TRAILING_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    policy: str
    generation: int
    counts: OutcomeCounts
    trailing_consecutive_failures: int
    probes: _containers.RepeatedCompositeFieldContainer[ProbeResult]
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., policy: _Optional[str] = ..., generation: _Optional[int] = ..., counts: _Optional[_Union[OutcomeCounts, _Mapping]] = ..., trailing_consecutive_failures: _Optional[int] = ..., probes: _Optional[_Iterable[_Union[ProbeResult, _Mapping]]] = ...) -> None: ...

class OutcomeBatch(_message.Message):
    __slots__ = ("client_id", "sequence", "breakers", "incarnation", "final", "mode")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    sequence: int
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerOutcomes]
    incarnation: int
    final: bool
    mode: ClientMode
    def __init__(self, client_id: _Optional[str] = ..., sequence: _Optional[int] = ..., breakers: _Optional[_Iterable[_Union[BreakerOutcomes, _Mapping]]] = ..., incarnation: _Optional[int] = ..., final: _Optional[bool] = ..., mode: _Optional[_Union[ClientMode, str]] = ...) -> None: ...

class BelowQuorumTrip(_message.Message):
    __slots__ = ("breaker", "reason", "open_ms", "generation")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPEN_MS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    reason: str
    open_ms: int
    generation: int
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., reason: _Optional[str] = ..., open_ms: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("accepted", "stale", "states", "rejected", "duplicate", "below_quorum")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    BELOW_QUORUM_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    stale: int
    states: _containers.RepeatedCompositeFieldContainer[BreakerStatus]
    rejected: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldViolation]
    duplicate: bool
    below_quorum: _containers.RepeatedCompositeFieldContainer[BelowQuorumTrip]
    def __init__(self, accepted: _Optional[int] = ..., stale: _Optional[int] = ..., states: _Optional[_Iterable[_Union[BreakerStatus, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[_common_pb2.FieldViolation, _Mapping]]] = ..., duplicate: _Optional[bool] = ..., below_quorum: _Optional[_Iterable[_Union[BelowQuorumTrip, _Mapping]]] = ...) -> None: ...

class AcquirePermitRequest(_message.Message):
    __slots__ = ("breaker", "client_id", "generation")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    client_id: str
    generation: int
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., client_id: _Optional[str] = ..., generation: _Optional[int] = ...) -> None: ...

class AcquirePermitResponse(_message.Message):
    __slots__ = ("granted", "permit_id", "generation", "state", "expires_in_ms", "retry_after_ms", "reason")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    permit_id: int
    generation: int
    state: BreakerState
    expires_in_ms: int
    retry_after_ms: int
    reason: str
    def __init__(self, granted: _Optional[bool] = ..., permit_id: _Optional[int] = ..., generation: _Optional[int] = ..., state: _Optional[_Union[BreakerState, str]] = ..., expires_in_ms: _Optional[int] = ..., retry_after_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BreakerStatus(_message.Message):
    __slots__ = ("breaker", "policy", "state", "evaluated_state", "generation", "since_ms", "until_ms", "reason")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_STATE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    policy: str
    state: BreakerState
    evaluated_state: BreakerState
    generation: int
    since_ms: int
    until_ms: int
    reason: str
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ..., policy: _Optional[str] = ..., state: _Optional[_Union[BreakerState, str]] = ..., evaluated_state: _Optional[_Union[BreakerState, str]] = ..., generation: _Optional[int] = ..., since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class BreakerTransition(_message.Message):
    __slots__ = ("status", "from_state", "reason", "contributing_clients", "at_ms")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTING_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    status: BreakerStatus
    from_state: BreakerState
    reason: str
    contributing_clients: _containers.RepeatedScalarFieldContainer[str]
    at_ms: int
    def __init__(self, status: _Optional[_Union[BreakerStatus, _Mapping]] = ..., from_state: _Optional[_Union[BreakerState, str]] = ..., reason: _Optional[str] = ..., contributing_clients: _Optional[_Iterable[str]] = ..., at_ms: _Optional[int] = ...) -> None: ...

class WatchBreakersRequest(_message.Message):
    __slots__ = ("registry", "name_prefix")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name_prefix: str
    def __init__(self, registry: _Optional[str] = ..., name_prefix: _Optional[str] = ...) -> None: ...

class BreakerSnapshot(_message.Message):
    __slots__ = ("breakers",)
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerStatus]
    def __init__(self, breakers: _Optional[_Iterable[_Union[BreakerStatus, _Mapping]]] = ...) -> None: ...

class BreakerEvent(_message.Message):
    __slots__ = ("snapshot", "transition")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    snapshot: BreakerSnapshot
    transition: BreakerTransition
    def __init__(self, snapshot: _Optional[_Union[BreakerSnapshot, _Mapping]] = ..., transition: _Optional[_Union[BreakerTransition, _Mapping]] = ...) -> None: ...

class GetBreakerRequest(_message.Message):
    __slots__ = ("breaker",)
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    breaker: _common_pb2.BreakerRef
    def __init__(self, breaker: _Optional[_Union[_common_pb2.BreakerRef, _Mapping]] = ...) -> None: ...

class WindowStats(_message.Message):
    __slots__ = ("counts", "calls", "failure_rate_percent", "slow_call_rate_percent", "consecutive_failures", "failing_clients")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALL_RATE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILING_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    counts: OutcomeCounts
    calls: int
    failure_rate_percent: float
    slow_call_rate_percent: float
    consecutive_failures: int
    failing_clients: int
    def __init__(self, counts: _Optional[_Union[OutcomeCounts, _Mapping]] = ..., calls: _Optional[int] = ..., failure_rate_percent: _Optional[float] = ..., slow_call_rate_percent: _Optional[float] = ..., consecutive_failures: _Optional[int] = ..., failing_clients: _Optional[int] = ...) -> None: ...

class ClientContribution(_message.Message):
    __slots__ = ("client_id", "counts", "last_report_at_ms")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_REPORT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    counts: OutcomeCounts
    last_report_at_ms: int
    def __init__(self, client_id: _Optional[str] = ..., counts: _Optional[_Union[OutcomeCounts, _Mapping]] = ..., last_report_at_ms: _Optional[int] = ...) -> None: ...

class BreakerDetail(_message.Message):
    __slots__ = ("status", "window", "contributions", "outstanding_permits", "trips")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_PERMITS_FIELD_NUMBER: _ClassVar[int]
    TRIPS_FIELD_NUMBER: _ClassVar[int]
    status: BreakerStatus
    window: WindowStats
    contributions: _containers.RepeatedCompositeFieldContainer[ClientContribution]
    outstanding_permits: int
    trips: int
    def __init__(self, status: _Optional[_Union[BreakerStatus, _Mapping]] = ..., window: _Optional[_Union[WindowStats, _Mapping]] = ..., contributions: _Optional[_Iterable[_Union[ClientContribution, _Mapping]]] = ..., outstanding_permits: _Optional[int] = ..., trips: _Optional[int] = ...) -> None: ...

class ListBreakersRequest(_message.Message):
    __slots__ = ("registry", "name_prefix", "page_size", "page_token")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NAME_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registry: str
    name_prefix: str
    page_size: int
    page_token: str
    def __init__(self, registry: _Optional[str] = ..., name_prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBreakersResponse(_message.Message):
    __slots__ = ("breakers", "next_page_token")
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerStatus]
    next_page_token: str
    def __init__(self, breakers: _Optional[_Iterable[_Union[BreakerStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
