"""Metrics with the Swift SDK's names (docs/CLIENT.md, "Metrics"). The SDK
calls a `Metrics` object; `PrometheusMetrics` (extra `fusebox-client[prometheus]`)
exports them with prometheus-client, the default `Metrics` drops them."""
from __future__ import annotations

from typing import Optional


class Metrics:
    """No metrics: every method does nothing."""

    def state_changed(self, registry: str, breaker: str, from_state: str, to_state: str) -> None: ...
    def call(self, registry: str, breaker: str, result: str, slow: bool, seconds: float) -> None: ...
    def ignored(self, registry: str, breaker: str) -> None: ...
    def not_permitted(self, registry: str, breaker: str) -> None: ...
    def retry(self, registry: str, breaker: str) -> None: ...
    def timeout(self, registry: str, breaker: str, kind: str) -> None: ...
    def bulkhead(self, registry: str, breaker: str, permitted: bool) -> None: ...
    def bulkhead_gauges(self, registry: str, breaker: str, active: int, queued: int) -> None: ...
    def fallback(self, registry: str, breaker: str) -> None: ...
    def staleness(self, seconds: float) -> None: ...
    def mode(self, mode: str) -> None: ...
    def policy_source(self, source: str) -> None: ...


class PrometheusMetrics(Metrics):
    """The SDK's metrics in a prometheus-client registry (the default one unless given)."""

    def __init__(self, registry=None):
        try:
            import prometheus_client as p
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError("PrometheusMetrics needs prometheus-client: pip install 'fusebox-client[prometheus]'") from e
        kw = {"registry": registry} if registry is not None else {}
        rb = ["registry", "breaker"]
        self._changes = p.Counter("circuit_breaker_state_changes_total", "Transitions this client applied, local opens below quorum and their ends included", rb + ["from", "to"], **kw)
        self._calls = p.Counter("circuit_breaker_calls_total", "Calls that reached the dependency and counted", rb + ["result"], **kw)
        self._slow = p.Counter("circuit_breaker_slow_calls_total", "Calls slower than the policy's slowCallDurationThresholdMs", rb + ["result"], **kw)
        self._ignored = p.Counter("circuit_breaker_ignored_calls_total", "Calls whose error the policy ignores, and cancelled ones", rb, **kw)
        self._not_permitted = p.Counter("circuit_breaker_not_permitted_calls_total", "Calls the breaker rejected", rb, **kw)
        self._duration = p.Histogram("circuit_breaker_call_duration_seconds", "Latency of each attempt", rb + ["result"], **kw)
        self._retries = p.Counter("retry_attempts_total", "Retries (attempts after the first)", rb, **kw)
        self._timeouts = p.Counter("timeout_operations_total", "Timeouts", rb + ["kind"], **kw)
        self._bulkhead = p.Counter("bulkhead_executions_total", "Bulkhead admissions", rb + ["state"], **kw)
        self._active = p.Gauge("bulkhead_active_calls", "Calls holding a bulkhead slot", rb, **kw)
        self._queued = p.Gauge("bulkhead_queued_calls", "Calls queued for a bulkhead slot", rb, **kw)
        self._fallbacks = p.Counter("fallback_calls_total", "Failures the policy's fallback section answered", rb, **kw)
        self._staleness = p.Gauge("fusebox_client_staleness_seconds", "How long the client's view has not been confirmed by fuseboxd", **kw)
        self._mode = p.Gauge("fusebox_client_mode", "1 for the mode in force", ["mode"], **kw)
        self._source = p.Gauge("fusebox_client_policy_source", "1 for where the startup policies came from", ["source"], **kw)

    def state_changed(self, registry, breaker, from_state, to_state):
        self._changes.labels(registry, breaker, from_state, to_state).inc()

    def call(self, registry, breaker, result, slow, seconds):
        self._calls.labels(registry, breaker, result).inc()
        if slow:
            self._slow.labels(registry, breaker, result).inc()
        self._duration.labels(registry, breaker, result).observe(seconds)

    def ignored(self, registry, breaker):
        self._ignored.labels(registry, breaker).inc()

    def not_permitted(self, registry, breaker):
        self._not_permitted.labels(registry, breaker).inc()

    def retry(self, registry, breaker):
        self._retries.labels(registry, breaker).inc()

    def timeout(self, registry, breaker, kind):
        self._timeouts.labels(registry, breaker, kind).inc()

    def bulkhead(self, registry, breaker, permitted):
        self._bulkhead.labels(registry, breaker, "permitted" if permitted else "rejected").inc()

    def bulkhead_gauges(self, registry, breaker, active, queued):
        self._active.labels(registry, breaker).set(active)
        self._queued.labels(registry, breaker).set(queued)

    def fallback(self, registry, breaker):
        self._fallbacks.labels(registry, breaker).inc()

    def staleness(self, seconds):
        self._staleness.set(seconds)

    def mode(self, mode):
        for m in ("fleet", "local"):
            self._mode.labels(m).set(1 if m == mode else 0)

    def policy_source(self, source):
        for s in ("server", "cache", "presets"):
            self._source.labels(s).set(1 if s == source else 0)


def default_metrics(metrics: Optional[Metrics]) -> Metrics:
    return metrics if metrics is not None else Metrics()
