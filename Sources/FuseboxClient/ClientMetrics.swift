import CoreMetrics
import Synchronization
import FuseboxCore

/// The SDK's metrics, through swift-metrics (DESIGN: client metric names).
/// Whatever backend the service bootstraps (Prometheus, StatsD, OTel) gets them.
struct GuardMetrics: Sendable {
    let registry: String
    let breaker: String
    let retryAttempts: Counter
    let attemptTimeouts: Counter
    let totalTimeouts: Counter
    let bulkheadPermitted: Counter
    let bulkheadRejected: Counter
    let callsSuccessful: Counter
    let callsFailed: Counter
    let slowSuccessful: Counter
    let slowFailed: Counter
    let callsIgnored: Counter
    let callsNotPermitted: Counter
    let fallbacksServed: Counter
    /// Latency of the calls that reached the dependency, by result.
    let durationSuccess: Timer
    let durationFailure: Timer

    init(registry: String, breaker: String) {
        self.registry = registry
        self.breaker = breaker
        let base = [("registry", registry), ("breaker", breaker)]
        retryAttempts = Counter(label: "retry_attempts_total", dimensions: base)
        attemptTimeouts = Counter(label: "timeout_operations_total", dimensions: base + [("kind", "attempt")])
        totalTimeouts = Counter(label: "timeout_operations_total", dimensions: base + [("kind", "total")])
        bulkheadPermitted = Counter(label: "bulkhead_executions_total", dimensions: base + [("state", "permitted")])
        bulkheadRejected = Counter(label: "bulkhead_executions_total", dimensions: base + [("state", "rejected")])
        // The seeds' label values: `result` is success or failure.
        callsSuccessful = Counter(label: "circuit_breaker_calls_total", dimensions: base + [("result", "success")])
        callsFailed = Counter(label: "circuit_breaker_calls_total", dimensions: base + [("result", "failure")])
        slowSuccessful = Counter(label: "circuit_breaker_slow_calls_total", dimensions: base + [("result", "success")])
        slowFailed = Counter(label: "circuit_breaker_slow_calls_total", dimensions: base + [("result", "failure")])
        callsIgnored = Counter(label: "circuit_breaker_ignored_calls_total", dimensions: base)
        callsNotPermitted = Counter(label: "circuit_breaker_not_permitted_calls_total", dimensions: base)
        fallbacksServed = Counter(label: "fallback_calls_total", dimensions: base)
        durationSuccess = Timer(label: "circuit_breaker_call_duration_seconds", dimensions: base + [("result", "success")], preferredDisplayUnit: .seconds)
        durationFailure = Timer(label: "circuit_breaker_call_duration_seconds", dimensions: base + [("result", "failure")], preferredDisplayUnit: .seconds)
    }

    /// Moves the atomically counted calls into the counters.
    func flush(_ c: CallCounters) {
        func move(_ atomic: borrowing Atomic<UInt64>, _ counter: Counter) {
            let n = atomic.exchange(0, ordering: .relaxed)
            if n > 0 { counter.increment(by: Int64(clamping: n)) }
        }
        move(c.successful, callsSuccessful)
        move(c.failed, callsFailed)
        move(c.slowSuccessful, slowSuccessful)
        move(c.slowFailed, slowFailed)
        move(c.ignored, callsIgnored)
        move(c.notPermitted, callsNotPermitted)
    }

    func stateChanged(from: BreakerState, to: BreakerState) {
        Counter(
            label: "circuit_breaker_state_changes_total",
            dimensions: [("registry", registry), ("breaker", breaker), ("from", from.rawValue), ("to", to.rawValue)]
        ).increment()
    }
}

/// Client-wide gauges: how stale the client's view is, which mode it runs
/// in, and where its policies came from.
struct ClientGauges: Sendable {
    let staleness = Gauge(label: "fusebox_client_staleness_seconds")
    let fleetMode = Gauge(label: "fusebox_client_mode", dimensions: [("mode", "fleet")])
    let localMode = Gauge(label: "fusebox_client_mode", dimensions: [("mode", "local")])

    func mode(_ mode: ClientMode) {
        fleetMode.record(mode == .fleet ? 1 : 0)
        localMode.record(mode == .local ? 1 : 0)
    }

    func policySource(_ source: PolicySource) {
        for s in [PolicySource.server, .cache, .presets] {
            Gauge(label: "fusebox_client_policy_source", dimensions: [("source", s.rawValue)]).record(s == source ? 1 : 0)
        }
    }
}

/// A guard's bulkhead, as gauges: calls holding a slot, calls queued for one.
struct BulkheadGauges: Sendable {
    let active: Gauge
    let queued: Gauge

    init(registry: String, breaker: String) {
        let labels = [("registry", registry), ("breaker", breaker)]
        active = Gauge(label: "bulkhead_active_calls", dimensions: labels)
        queued = Gauge(label: "bulkhead_queued_calls", dimensions: labels)
    }

    func record(_ counts: BulkheadStateMachine.Counts) {
        active.record(Double(counts.active))
        queued.record(Double(counts.queued))
    }
}
