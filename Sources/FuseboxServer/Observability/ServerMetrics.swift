import CoreMetrics
import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import Synchronization

/// The server's metrics, through the swift-metrics API (fuseboxd bootstraps
/// the Prometheus backend). Names are documented in docs/SERVER.md.
enum ServerMetrics {
    // Made once (on first use, after fuseboxd bootstrapped the metrics
    // system): making a counter per report cost 8% of the server's CPU under load.
    private static let reports = Counter(label: "fusebox_reports_total")
    private static let outcomes: [(Outcome, Counter)] = Outcome.allCases.map {
        ($0, Counter(label: "fusebox_outcomes_total", dimensions: [("result", "\($0)")]))
    }

    static func report(_ counts: OutcomeCounts) {
        reports.increment()
        for (outcome, counter) in outcomes where counts[outcome] > 0 {
            counter.increment(by: Int64(clamping: counts[outcome]))
        }
    }

    /// The series one method's calls with one status code go to.
    private struct RPCSeries: Sendable {
        let duration: Timer
        let calls: Counter
        let errors: Counter?
    }

    private struct RPCSeriesKey: Hashable {
        let path: String
        let code: RPCStatusCode
    }

    // Made on a method's first call with a code, then reused: building the
    // timer and counters per call was 2.8% of fuseboxd's CPU serving permits.
    // Bounded: only registered methods are observed, and codes are an enum.
    private static let rpcSeries = Mutex<[RPCSeriesKey: RPCSeries]>([:])

    static func rpc(path: String, code: RPCStatusCode, nanoseconds: Int64) {
        let key = RPCSeriesKey(path: path, code: code)
        let series = rpcSeries.withLock { cache in
            if let known = cache[key] { return known }
            let name = "\(code)"
            let made = RPCSeries(
                duration: Timer(label: "fusebox_rpc_duration_seconds", dimensions: [("method", path)], preferredDisplayUnit: .seconds),
                calls: Counter(label: "fusebox_rpc_calls_total", dimensions: [("method", path), ("code", name)]),
                errors: code == .ok ? nil : Counter(label: "fusebox_rpc_errors_total", dimensions: [("method", path), ("code", name)]))
            cache[key] = made
            return made
        }
        series.duration.recordNanoseconds(nanoseconds)
        series.calls.increment()
        series.errors?.increment()
    }

    static func store(_ operation: String, nanoseconds: Int64) {
        Timer(label: "fusebox_store_duration_seconds", dimensions: [("operation", operation)], preferredDisplayUnit: .seconds).recordNanoseconds(nanoseconds)
    }

    /// Creates the series that exist before anything happens, so /metrics
    /// (and alert rules) see them from the start.
    static func start(version: String) {
        Gauge(label: "fusebox_build_info", dimensions: [("version", version)]).record(1)
        Counter(label: "fusebox_reports_total").increment(by: 0)
        Counter(label: "fusebox_report_rejections_total").increment(by: 0)
        Counter(label: "fusebox_breaker_commits_total").increment(by: 0)
        gauges(connections: 0, callsInFlight: 0, breakerWatchers: 0, registryWatchers: 0, silentReporters: 0, localModeClients: 0)
    }

    /// A request, connection or watch refused at a configured limit.
    static func limitReached(_ limit: String) {
        Counter(label: "fusebox_limit_rejections_total", dimensions: [("limit", limit)]).increment()
    }

    /// An audit entry that could not be written (or was dropped from the refusal queue).
    static func auditWriteFailed(_ count: Int = 1) {
        Counter(label: "fusebox_audit_write_failures_total").increment(by: Int64(count))
    }

    static func rejected(_ count: Int) {
        Counter(label: "fusebox_report_rejections_total").increment(by: Int64(count))
    }

    static func gauges(
        connections: Int, callsInFlight: Int, breakerWatchers: Int, registryWatchers: Int, silentReporters: Int,
        localModeClients: Int
    ) {
        Gauge(label: "fusebox_clients_local_mode").record(Double(localModeClients))
        Gauge(label: "fusebox_rpc_calls_in_flight").record(Double(callsInFlight))
        Gauge(label: "fusebox_tls_connections_live").record(Double(TLSHandler.liveConnections))
        Gauge(label: "fusebox_rpc_connections_in_memory").record(Double(RPCServer.connectionsInMemory))
        Gauge(label: "fusebox_reporters_silent").record(Double(silentReporters))
        Gauge(label: "fusebox_connected_clients").record(Double(connections))
        Gauge(label: "fusebox_watchers", dimensions: [("kind", "breakers")]).record(Double(breakerWatchers))
        Gauge(label: "fusebox_watchers", dimensions: [("kind", "registry")]).record(Double(registryWatchers))
    }
}
