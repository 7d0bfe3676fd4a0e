"""Policies as the SDK applies them: the proto's sections with every zero
replaced by the default its comment names (Protos/fusebox/v1/policy.proto),
and the built-in presets used when neither fuseboxd nor the cache has a policy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import FrozenSet, Optional

from .v1 import policy_pb2 as pb

RETRY_CONDITIONS = {
    pb.RETRY_CONDITION_NETWORK_ERROR: "networkError",
    pb.RETRY_CONDITION_TIMEOUT: "timeout",
    pb.RETRY_CONDITION_RATE_LIMITED: "rateLimited",
    pb.RETRY_CONDITION_SERVER_ERROR: "serverError",
    pb.RETRY_CONDITION_ANY_FAILURE: "anyFailure",
}
FALLBACK_TRIGGERS = {
    pb.FALLBACK_TRIGGER_CIRCUIT_OPEN: "circuitOpen",
    pb.FALLBACK_TRIGGER_BULKHEAD_FULL: "bulkheadFull",
    pb.FALLBACK_TRIGGER_RATE_LIMITED: "rateLimited",
    pb.FALLBACK_TRIGGER_TIMEOUT: "timeout",
    pb.FALLBACK_TRIGGER_FAILURE: "failure",
}
JITTERS = {
    pb.JITTER_TYPE_NONE: "none",
    pb.JITTER_TYPE_FULL: "full",
    pb.JITTER_TYPE_EQUAL: "equal",
    pb.JITTER_TYPE_DECORRELATED: "decorrelated",
    pb.JITTER_TYPE_PROPORTIONAL: "proportional",
}


@dataclass(frozen=True)
class BreakerSettings:
    window_time: bool = False
    window_size: int = 100
    buckets: int = 0
    failure_rate: float = 0.0
    slow_rate: float = 0.0
    slow_ms: int = 60_000
    minimum_calls: int = 10
    consecutive_failures: int = 0
    minimum_clients: int = 1
    open_base_ms: int = 60_000
    open_multiplier: float = 1.0
    open_max_ms: int = 86_400_000
    open_jitter_percent: int = 0
    permitted_calls: int = 1
    permit_max_wait_ms: int = 30_000
    success_threshold: int = 1
    ignored_errors: FrozenSet[str] = frozenset()


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 3
    fixed: bool = False
    initial_ms: int = 100
    max_ms: int = 10_000
    multiplier: float = 2.0
    jitter: str = "full"
    jitter_percent: int = 20
    retry_on: FrozenSet[str] = frozenset({"networkError", "timeout", "serverError"})
    retryable_errors: FrozenSet[str] = frozenset()
    non_retryable_errors: FrozenSet[str] = frozenset()
    honor_pushback: bool = False
    budget_tokens: int = 0  # 0: no budget
    budget_ratio: float = 0.1


@dataclass(frozen=True)
class TimeoutSettings:
    attempt_ms: int = 0
    total_ms: int = 0


@dataclass(frozen=True)
class BulkheadSettings:
    max_concurrent: int = 1
    max_queued: int = 0
    max_wait_ms: int = 1_000


@dataclass(frozen=True)
class RateLimitSettings:
    limit_per_period: int = 1
    period_ms: int = 1_000
    burst: int = 1
    max_wait_ms: int = 0


@dataclass(frozen=True)
class FallbackSettings:
    triggers: FrozenSet[str] = frozenset()  # empty: every trigger
    action: str = ""  # "static", "staleCache" or "handler"
    content_type: str = ""
    body: bytes = b""
    handler: str = ""

    def answers(self, trigger: str) -> bool:
        return not self.triggers or trigger in self.triggers


@dataclass(frozen=True)
class CacheSettings:
    ttl_ms: int = 1
    max_entries: int = 1_000
    stale_while_revalidate_ms: int = 0


@dataclass(frozen=True)
class Policy:
    """One policy, each section None when absent."""

    name: str
    description: str = ""
    breaker: Optional[BreakerSettings] = None
    retry: Optional[RetrySettings] = None
    timeout: Optional[TimeoutSettings] = None
    bulkhead: Optional[BulkheadSettings] = None
    rate_limit: Optional[RateLimitSettings] = None
    fallback: Optional[FallbackSettings] = None
    cache: Optional[CacheSettings] = None
    proto: pb.Policy = field(default_factory=pb.Policy, compare=False, repr=False)

    @staticmethod
    def from_proto(p: pb.Policy) -> "Policy":
        return Policy(
            name=p.name,
            description=p.description,
            breaker=_breaker(p.circuit_breaker) if p.HasField("circuit_breaker") else None,
            retry=_retry(p.retry) if p.HasField("retry") else None,
            timeout=TimeoutSettings(p.timeout.attempt_ms, p.timeout.total_ms) if p.HasField("timeout") else None,
            bulkhead=(
                BulkheadSettings(max(p.bulkhead.max_concurrent, 1), p.bulkhead.max_queued, p.bulkhead.max_wait_ms or 1_000)
                if p.HasField("bulkhead")
                else None
            ),
            rate_limit=(
                RateLimitSettings(
                    max(p.rate_limit.limit_per_period, 1),
                    p.rate_limit.period_ms or 1_000,
                    p.rate_limit.burst or max(p.rate_limit.limit_per_period, 1),
                    p.rate_limit.max_wait_ms,
                )
                if p.HasField("rate_limit")
                else None
            ),
            fallback=_fallback(p.fallback) if p.HasField("fallback") else None,
            cache=(
                CacheSettings(max(p.cache.ttl_ms, 1), p.cache.max_entries or 1_000, p.cache.stale_while_revalidate_ms)
                if p.HasField("cache")
                else None
            ),
            proto=p,
        )


def _breaker(cb: pb.CircuitBreakerPolicy) -> BreakerSettings:
    time_window = cb.window.type == pb.WINDOW_TYPE_TIME
    permitted = cb.half_open.permitted_calls or 1
    return BreakerSettings(
        window_time=time_window,
        window_size=cb.window.size or (60 if time_window else 100),
        buckets=cb.window.buckets,
        failure_rate=cb.failure_rate_threshold_percent,
        slow_rate=cb.slow_call_rate_threshold_percent,
        slow_ms=cb.slow_call_duration_threshold_ms or 60_000,
        minimum_calls=cb.minimum_calls or 10,
        consecutive_failures=cb.consecutive_failures_threshold,
        minimum_clients=cb.minimum_clients or 1,
        open_base_ms=cb.open_duration.base_ms or 60_000,
        open_multiplier=max(cb.open_duration.multiplier, 1.0),
        open_max_ms=cb.open_duration.max_ms or 86_400_000,
        open_jitter_percent=cb.open_duration.jitter_percent,
        permitted_calls=permitted,
        permit_max_wait_ms=cb.half_open.max_wait_ms or 30_000,
        success_threshold=cb.half_open.success_threshold or permitted,
        ignored_errors=frozenset(cb.ignored_errors),
    )


def _retry(r: pb.RetryPolicy) -> RetrySettings:
    return RetrySettings(
        max_attempts=r.max_attempts or 3,
        fixed=r.backoff.type == pb.BACKOFF_TYPE_FIXED,
        initial_ms=r.backoff.initial_ms or 100,
        max_ms=r.backoff.max_ms or 10_000,
        multiplier=r.backoff.multiplier or 2.0,
        jitter=JITTERS.get(r.jitter, "full"),
        jitter_percent=r.jitter_percent or 20,
        retry_on=frozenset(RETRY_CONDITIONS[c] for c in r.retry_on if c in RETRY_CONDITIONS)
        or frozenset({"networkError", "timeout", "serverError"}),
        retryable_errors=frozenset(r.retryable_errors),
        non_retryable_errors=frozenset(r.non_retryable_errors),
        honor_pushback=r.honor_pushback,
        budget_tokens=(r.budget.max_tokens or 10) if r.HasField("budget") else 0,
        budget_ratio=(r.budget.token_ratio or 0.1) if r.HasField("budget") else 0.1,
    )


def _fallback(f: pb.FallbackPolicy) -> FallbackSettings:
    triggers = frozenset(FALLBACK_TRIGGERS[t] for t in f.on if t in FALLBACK_TRIGGERS)
    which = f.WhichOneof("action")
    if which == "static_response":
        return FallbackSettings(triggers, "static", f.static_response.content_type, bytes(f.static_response.body))
    if which == "stale_cache":
        return FallbackSettings(triggers, "staleCache")
    if which == "handler":
        return FallbackSettings(triggers, "handler", handler=f.handler)
    return FallbackSettings(triggers, "")


# MARK: presets (the same five as the Swift SDK's FuseboxCore.Presets)


def _preset(name: str, description: str, failures: int, open_ms: int, attempts: int, on: list, timeout_ms: int,
            concurrent: int, queued: int, initial_ms: int = 100, max_ms: int = 10_000) -> pb.Policy:
    p = pb.Policy(name=name, description=description)
    p.labels["fusebox.dev/preset"] = name
    if failures:
        p.circuit_breaker.consecutive_failures_threshold = failures
        p.circuit_breaker.open_duration.base_ms = open_ms
        p.circuit_breaker.open_duration.jitter_percent = 10  # breakers of many services must not half-open in lockstep
    p.retry.max_attempts = attempts
    p.retry.retry_on.extend(on)
    p.retry.backoff.type = pb.BACKOFF_TYPE_EXPONENTIAL
    p.retry.backoff.initial_ms = initial_ms
    p.retry.backoff.max_ms = max_ms
    p.retry.backoff.multiplier = 2
    p.retry.jitter = pb.JITTER_TYPE_FULL
    p.retry.honor_pushback = True
    p.retry.budget.max_tokens = 10
    p.retry.budget.token_ratio = 0.1
    p.timeout.attempt_ms = timeout_ms
    p.bulkhead.max_concurrent = concurrent
    p.bulkhead.max_queued = queued
    return p


_NET, _TIME, _RATE, _SERVER = (pb.RETRY_CONDITION_NETWORK_ERROR, pb.RETRY_CONDITION_TIMEOUT,
                               pb.RETRY_CONDITION_RATE_LIMITED, pb.RETRY_CONDITION_SERVER_ERROR)

PRESETS = {
    p.name: p
    for p in [
        _preset("ai", "AI providers: rate-limit aware retries honouring Retry-After; trip after 3 consecutive failures for 120 s.",
                3, 120_000, 3, [_RATE, _SERVER, _TIME], 120_000, 10, 50, initial_ms=1_000, max_ms=30_000),
        _preset("api", "Internal APIs: trip after 5 consecutive failures for 60 s; 3 attempts with exponential backoff.",
                5, 60_000, 3, [_NET, _TIME, _SERVER], 30_000, 50, 100),
        _preset("critical", "Must-try calls: no breaker; 5 attempts with exponential backoff; tight concurrency.",
                0, 0, 5, [_NET, _TIME, _SERVER], 60_000, 5, 10),
        _preset("database", "Databases: trip after 10 consecutive failures for 30 s; 3 attempts with exponential backoff.",
                10, 30_000, 3, [_NET, _TIME, _SERVER], 30_000, 100, 200),
        _preset("external", "Third-party services: retry network errors only; trip after 5 consecutive failures for 60 s.",
                5, 60_000, 3, [_NET], 15_000, 20, 50),
    ]
}
