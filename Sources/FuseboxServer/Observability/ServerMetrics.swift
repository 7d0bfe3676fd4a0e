import CoreMetrics
import FuseboxCore

/// The server's metrics, through the swift-metrics API (fuseboxd bootstraps
/// the Prometheus backend). Names are documented in docs/SERVER.md.
enum ServerMetrics {
    static func transition(registry: String, breaker: String, to state: BreakerState) {
        Counter(label: "fusebox_breaker_transitions_total", dimensions: [("registry", registry), ("breaker", breaker), ("to", state.rawValue)]).increment()
        Gauge(label: "fusebox_breaker_state", dimensions: [("registry", registry), ("breaker", breaker)]).record(Double(code(state)))
    }

    /// 0 closed, 1 open, 2 half-open, 3 forced open, 4 forced closed, 5 disabled, 6 shadow.
    static func code(_ state: BreakerState) -> Int {
        BreakerState.allCases.firstIndex(of: state) ?? 0
    }

    static func report(_ counts: OutcomeCounts) {
        Counter(label: "fusebox_reports_total").increment()
        for outcome in Outcome.allCases where counts[outcome] > 0 {
            Counter(label: "fusebox_outcomes_total", dimensions: [("result", "\(outcome)")]).increment(by: Int64(clamping: counts[outcome]))
        }
    }

    static func rpc(path: String, code: String, nanoseconds: Int64) {
        Timer(label: "fusebox_rpc_duration_seconds", dimensions: [("method", path)], preferredDisplayUnit: .seconds).recordNanoseconds(nanoseconds)
        Counter(label: "fusebox_rpc_calls_total", dimensions: [("method", path), ("code", code)]).increment()
        if code != "OK" {
            Counter(label: "fusebox_rpc_errors_total", dimensions: [("method", path), ("code", code)]).increment()
        }
    }

    static func store(_ operation: String, nanoseconds: Int64) {
        Timer(label: "fusebox_store_duration_seconds", dimensions: [("operation", operation)], preferredDisplayUnit: .seconds).recordNanoseconds(nanoseconds)
    }

    static func gauges(connections: Int, breakerWatchers: Int, registryWatchers: Int) {
        Gauge(label: "fusebox_connected_clients").record(Double(connections))
        Gauge(label: "fusebox_watchers", dimensions: [("kind", "breakers")]).record(Double(breakerWatchers))
        Gauge(label: "fusebox_watchers", dimensions: [("kind", "registry")]).record(Double(registryWatchers))
    }
}
