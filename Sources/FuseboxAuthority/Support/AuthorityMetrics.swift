import CoreMetrics
import FuseboxCore

/// The authority's metrics, through the swift-metrics API. Names are
/// documented in docs/SERVER.md.
enum AuthorityMetrics {
    /// 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed, 5 disabled, 6 shadow.
    static func code(_ state: BreakerState) -> Double {
        Double(BreakerState.allCases.firstIndex(of: state) ?? 0)
    }

    /// A breaker's current state (and the state its rules give, which differs under an override).
    static func state(_ key: BreakerKey, _ status: BreakerStatus) {
        let dimensions = [("registry", key.registry), ("breaker", key.name)]
        Gauge(label: "fusebox_breaker_state", dimensions: dimensions).record(code(status.state))
        Gauge(label: "fusebox_breaker_evaluated_state", dimensions: dimensions).record(code(status.evaluatedState))
    }

    static func transition(_ key: BreakerKey, _ t: BreakerTransition) {
        Counter(label: "fusebox_breaker_transitions_total", dimensions: [
            ("registry", key.registry), ("breaker", key.name), ("to", t.status.state.rawValue),
        ]).increment()
        state(key, t.status)
    }

    static func limitReached(_ limit: String) {
        Counter(label: "fusebox_limit_rejections_total", dimensions: [("limit", limit)]).increment()
    }

    static func evicted(_ count: Int) {
        Counter(label: "fusebox_breakers_evicted_total").increment(by: Int64(count))
    }

    /// One group of breaker changes made durable: one SQLite transaction, one fsync.
    static func committed() {
        Counter(label: "fusebox_breaker_commits_total").increment()
    }

    static func commitFailed() {
        Counter(label: "fusebox_store_commit_failures_total").increment()
    }
}
