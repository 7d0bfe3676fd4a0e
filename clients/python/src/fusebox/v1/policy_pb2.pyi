from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WindowType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WINDOW_TYPE_UNSPECIFIED: _ClassVar[WindowType]
    WINDOW_TYPE_COUNT: _ClassVar[WindowType]
    WINDOW_TYPE_TIME: _ClassVar[WindowType]

class BackoffType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKOFF_TYPE_UNSPECIFIED: _ClassVar[BackoffType]
    BACKOFF_TYPE_FIXED: _ClassVar[BackoffType]
    BACKOFF_TYPE_EXPONENTIAL: _ClassVar[BackoffType]

class JitterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JITTER_TYPE_UNSPECIFIED: _ClassVar[JitterType]
    JITTER_TYPE_NONE: _ClassVar[JitterType]
    JITTER_TYPE_FULL: _ClassVar[JitterType]
    JITTER_TYPE_EQUAL: _ClassVar[JitterType]
    JITTER_TYPE_DECORRELATED: _ClassVar[JitterType]
    JITTER_TYPE_PROPORTIONAL: _ClassVar[JitterType]

class RetryCondition(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRY_CONDITION_UNSPECIFIED: _ClassVar[RetryCondition]
    RETRY_CONDITION_NETWORK_ERROR: _ClassVar[RetryCondition]
    RETRY_CONDITION_TIMEOUT: _ClassVar[RetryCondition]
    RETRY_CONDITION_RATE_LIMITED: _ClassVar[RetryCondition]
    RETRY_CONDITION_SERVER_ERROR: _ClassVar[RetryCondition]
    RETRY_CONDITION_ANY_FAILURE: _ClassVar[RetryCondition]

class FallbackTrigger(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FALLBACK_TRIGGER_UNSPECIFIED: _ClassVar[FallbackTrigger]
    FALLBACK_TRIGGER_CIRCUIT_OPEN: _ClassVar[FallbackTrigger]
    FALLBACK_TRIGGER_BULKHEAD_FULL: _ClassVar[FallbackTrigger]
    FALLBACK_TRIGGER_RATE_LIMITED: _ClassVar[FallbackTrigger]
    FALLBACK_TRIGGER_TIMEOUT: _ClassVar[FallbackTrigger]
    FALLBACK_TRIGGER_FAILURE: _ClassVar[FallbackTrigger]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_CREATED: _ClassVar[ChangeKind]
    CHANGE_KIND_UPDATED: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETED: _ClassVar[ChangeKind]
WINDOW_TYPE_UNSPECIFIED: WindowType
WINDOW_TYPE_COUNT: WindowType
WINDOW_TYPE_TIME: WindowType
BACKOFF_TYPE_UNSPECIFIED: BackoffType
BACKOFF_TYPE_FIXED: BackoffType
BACKOFF_TYPE_EXPONENTIAL: BackoffType
JITTER_TYPE_UNSPECIFIED: JitterType
JITTER_TYPE_NONE: JitterType
JITTER_TYPE_FULL: JitterType
JITTER_TYPE_EQUAL: JitterType
JITTER_TYPE_DECORRELATED: JitterType
JITTER_TYPE_PROPORTIONAL: JitterType
RETRY_CONDITION_UNSPECIFIED: RetryCondition
RETRY_CONDITION_NETWORK_ERROR: RetryCondition
RETRY_CONDITION_TIMEOUT: RetryCondition
RETRY_CONDITION_RATE_LIMITED: RetryCondition
RETRY_CONDITION_SERVER_ERROR: RetryCondition
RETRY_CONDITION_ANY_FAILURE: RetryCondition
FALLBACK_TRIGGER_UNSPECIFIED: FallbackTrigger
FALLBACK_TRIGGER_CIRCUIT_OPEN: FallbackTrigger
FALLBACK_TRIGGER_BULKHEAD_FULL: FallbackTrigger
FALLBACK_TRIGGER_RATE_LIMITED: FallbackTrigger
FALLBACK_TRIGGER_TIMEOUT: FallbackTrigger
FALLBACK_TRIGGER_FAILURE: FallbackTrigger
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_CREATED: ChangeKind
CHANGE_KIND_UPDATED: ChangeKind
CHANGE_KIND_DELETED: ChangeKind

class Policy(_message.Message):
    __slots__ = ("name", "description", "labels", "circuit_breaker", "retry", "timeout", "bulkhead", "rate_limit", "fallback", "cache")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    BULKHEAD_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    labels: _containers.ScalarMap[str, str]
    circuit_breaker: CircuitBreakerPolicy
    retry: RetryPolicy
    timeout: TimeoutPolicy
    bulkhead: BulkheadPolicy
    rate_limit: RateLimitPolicy
    fallback: FallbackPolicy
    cache: CachePolicy
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., circuit_breaker: _Optional[_Union[CircuitBreakerPolicy, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[TimeoutPolicy, _Mapping]] = ..., bulkhead: _Optional[_Union[BulkheadPolicy, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimitPolicy, _Mapping]] = ..., fallback: _Optional[_Union[FallbackPolicy, _Mapping]] = ..., cache: _Optional[_Union[CachePolicy, _Mapping]] = ...) -> None: ...

class CircuitBreakerPolicy(_message.Message):
    __slots__ = ("window", "failure_rate_threshold_percent", "slow_call_rate_threshold_percent", "slow_call_duration_threshold_ms", "minimum_calls", "consecutive_failures_threshold", "minimum_clients", "open_duration", "half_open", "ignored_errors")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    FAILURE_RATE_THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALL_RATE_THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    SLOW_CALL_DURATION_THRESHOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_CALLS_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_CLIENTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_DURATION_FIELD_NUMBER: _ClassVar[int]
    HALF_OPEN_FIELD_NUMBER: _ClassVar[int]
    IGNORED_ERRORS_FIELD_NUMBER: _ClassVar[int]
    window: SlidingWindow
    failure_rate_threshold_percent: float
    slow_call_rate_threshold_percent: float
    slow_call_duration_threshold_ms: int
    minimum_calls: int
    consecutive_failures_threshold: int
    minimum_clients: int
    open_duration: OpenDuration
    half_open: HalfOpenPolicy
    ignored_errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, window: _Optional[_Union[SlidingWindow, _Mapping]] = ..., failure_rate_threshold_percent: _Optional[float] = ..., slow_call_rate_threshold_percent: _Optional[float] = ..., slow_call_duration_threshold_ms: _Optional[int] = ..., minimum_calls: _Optional[int] = ..., consecutive_failures_threshold: _Optional[int] = ..., minimum_clients: _Optional[int] = ..., open_duration: _Optional[_Union[OpenDuration, _Mapping]] = ..., half_open: _Optional[_Union[HalfOpenPolicy, _Mapping]] = ..., ignored_errors: _Optional[_Iterable[str]] = ...) -> None: ...

class SlidingWindow(_message.Message):
    __slots__ = ("type", "size", "buckets")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    type: WindowType
    size: int
    buckets: int
    def __init__(self, type: _Optional[_Union[WindowType, str]] = ..., size: _Optional[int] = ..., buckets: _Optional[int] = ...) -> None: ...

class OpenDuration(_message.Message):
    __slots__ = ("base_ms", "multiplier", "max_ms", "jitter_percent")
    BASE_MS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    JITTER_PERCENT_FIELD_NUMBER: _ClassVar[int]
    base_ms: int
    multiplier: float
    max_ms: int
    jitter_percent: int
    def __init__(self, base_ms: _Optional[int] = ..., multiplier: _Optional[float] = ..., max_ms: _Optional[int] = ..., jitter_percent: _Optional[int] = ...) -> None: ...

class HalfOpenPolicy(_message.Message):
    __slots__ = ("permitted_calls", "max_wait_ms", "success_threshold")
    PERMITTED_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    permitted_calls: int
    max_wait_ms: int
    success_threshold: int
    def __init__(self, permitted_calls: _Optional[int] = ..., max_wait_ms: _Optional[int] = ..., success_threshold: _Optional[int] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "backoff", "jitter", "jitter_percent", "retry_on", "retryable_errors", "non_retryable_errors", "honor_pushback", "budget")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    JITTER_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERRORS_FIELD_NUMBER: _ClassVar[int]
    HONOR_PUSHBACK_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    backoff: Backoff
    jitter: JitterType
    jitter_percent: int
    retry_on: _containers.RepeatedScalarFieldContainer[RetryCondition]
    retryable_errors: _containers.RepeatedScalarFieldContainer[str]
    non_retryable_errors: _containers.RepeatedScalarFieldContainer[str]
    honor_pushback: bool
    budget: RetryBudget
    def __init__(self, max_attempts: _Optional[int] = ..., backoff: _Optional[_Union[Backoff, _Mapping]] = ..., jitter: _Optional[_Union[JitterType, str]] = ..., jitter_percent: _Optional[int] = ..., retry_on: _Optional[_Iterable[_Union[RetryCondition, str]]] = ..., retryable_errors: _Optional[_Iterable[str]] = ..., non_retryable_errors: _Optional[_Iterable[str]] = ..., honor_pushback: _Optional[bool] = ..., budget: _Optional[_Union[RetryBudget, _Mapping]] = ...) -> None: ...

class Backoff(_message.Message):
    __slots__ = ("type", "initial_ms", "max_ms", "multiplier")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INITIAL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_MS_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    type: BackoffType
    initial_ms: int
    max_ms: int
    multiplier: float
    def __init__(self, type: _Optional[_Union[BackoffType, str]] = ..., initial_ms: _Optional[int] = ..., max_ms: _Optional[int] = ..., multiplier: _Optional[float] = ...) -> None: ...

class RetryBudget(_message.Message):
    __slots__ = ("max_tokens", "token_ratio")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_RATIO_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    token_ratio: float
    def __init__(self, max_tokens: _Optional[int] = ..., token_ratio: _Optional[float] = ...) -> None: ...

class TimeoutPolicy(_message.Message):
    __slots__ = ("attempt_ms", "total_ms")
    ATTEMPT_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    attempt_ms: int
    total_ms: int
    def __init__(self, attempt_ms: _Optional[int] = ..., total_ms: _Optional[int] = ...) -> None: ...

class BulkheadPolicy(_message.Message):
    __slots__ = ("max_concurrent", "max_queued", "max_wait_ms")
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    max_concurrent: int
    max_queued: int
    max_wait_ms: int
    def __init__(self, max_concurrent: _Optional[int] = ..., max_queued: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class RateLimitPolicy(_message.Message):
    __slots__ = ("limit_per_period", "period_ms", "burst", "max_wait_ms")
    LIMIT_PER_PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    limit_per_period: int
    period_ms: int
    burst: int
    max_wait_ms: int
    def __init__(self, limit_per_period: _Optional[int] = ..., period_ms: _Optional[int] = ..., burst: _Optional[int] = ..., max_wait_ms: _Optional[int] = ...) -> None: ...

class FallbackPolicy(_message.Message):
    __slots__ = ("on", "static_response", "stale_cache", "handler")
    ON_FIELD_NUMBER: _ClassVar[int]
    STATIC_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STALE_CACHE_FIELD_NUMBER: _ClassVar[int]
    HANDLER_FIELD_NUMBER: _ClassVar[int]
    on: _containers.RepeatedScalarFieldContainer[FallbackTrigger]
    static_response: StaticResponse
    stale_cache: bool
    handler: str
    def __init__(self, on: _Optional[_Iterable[_Union[FallbackTrigger, str]]] = ..., static_response: _Optional[_Union[StaticResponse, _Mapping]] = ..., stale_cache: _Optional[bool] = ..., handler: _Optional[str] = ...) -> None: ...

class StaticResponse(_message.Message):
    __slots__ = ("content_type", "body")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    body: bytes
    def __init__(self, content_type: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class CachePolicy(_message.Message):
    __slots__ = ("ttl_ms", "max_entries", "stale_while_revalidate_ms")
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    STALE_WHILE_REVALIDATE_MS_FIELD_NUMBER: _ClassVar[int]
    ttl_ms: int
    max_entries: int
    stale_while_revalidate_ms: int
    def __init__(self, ttl_ms: _Optional[int] = ..., max_entries: _Optional[int] = ..., stale_while_revalidate_ms: _Optional[int] = ...) -> None: ...

class PolicyRecord(_message.Message):
    __slots__ = ("policy", "version", "updated_at_ms", "updated_by")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    policy: Policy
    version: int
    updated_at_ms: int
    updated_by: str
    def __init__(self, policy: _Optional[_Union[Policy, _Mapping]] = ..., version: _Optional[int] = ..., updated_at_ms: _Optional[int] = ..., updated_by: _Optional[str] = ...) -> None: ...

class RegistrySummary(_message.Message):
    __slots__ = ("name", "version", "policy_count", "updated_at_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_COUNT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    policy_count: int
    updated_at_ms: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., policy_count: _Optional[int] = ..., updated_at_ms: _Optional[int] = ...) -> None: ...

class RegistrySnapshot(_message.Message):
    __slots__ = ("name", "version", "policies")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    policies: _containers.RepeatedCompositeFieldContainer[PolicyRecord]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., policies: _Optional[_Iterable[_Union[PolicyRecord, _Mapping]]] = ...) -> None: ...

class PolicyChange(_message.Message):
    __slots__ = ("registry", "version", "policy_name", "kind", "before", "after", "actor", "at_ms", "reason")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    registry: str
    version: int
    policy_name: str
    kind: ChangeKind
    before: Policy
    after: Policy
    actor: str
    at_ms: int
    reason: str
    def __init__(self, registry: _Optional[str] = ..., version: _Optional[int] = ..., policy_name: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., before: _Optional[_Union[Policy, _Mapping]] = ..., after: _Optional[_Union[Policy, _Mapping]] = ..., actor: _Optional[str] = ..., at_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
