import FuseboxAlerts
public import FuseboxAuthority
public import FuseboxCore

/// How healthy something is, worst last.
public enum FleetHealthStatus: Int, Sendable, Hashable, Comparable {
    case healthy = 1, degraded = 2, critical = 3

    public static func < (a: FleetHealthStatus, b: FleetHealthStatus) -> Bool { a.rawValue < b.rawValue }

    public var name: String {
        switch self {
        case .healthy: return "healthy"
        case .degraded: return "degraded"
        case .critical: return "critical"
        }
    }
}

/// One reason a status is not healthy.
public struct FleetHealthReason: Sendable, Hashable {
    public var code: String
    public var status: FleetHealthStatus
    public var message: String
}

/// The fleet's health as `FleetHealthService` reports it (Protos/fusebox/v1/health.proto).
public struct FleetHealthReport: Sendable, Hashable {
    public struct Breaker: Sendable, Hashable {
        public var key: BreakerKey
        public var state: BreakerState
        public var status: FleetHealthStatus
        public var reasons: [FleetHealthReason]
        public var calls: Int
        public var failures: Int
        public var recentTrips: Int
        public var notPassingSinceMs: Int64?
    }

    public struct Registry: Sendable, Hashable {
        public var name: String
        public var status: FleetHealthStatus
        public var healthy = 0
        public var degraded = 0
        public var critical = 0
        /// The breakers that are not healthy, worst first.
        public var breakers: [Breaker] = []
    }

    public var status: FleetHealthStatus
    public var reasons: [FleetHealthReason]
    public var registries: [Registry]
    public var localModeClients: Int
    public var storeAvailable: Bool
    public var replicasServing: Int
    public var replicas: Int
    public var atMs: Int64
    public var answeredBy: String

    /// The same health for a watcher: the same statuses, reasons (by code),
    /// breakers and states, local-mode count and store; messages with elapsed
    /// times and window counts may differ (else a watch would get an update
    /// every second while any breaker is not healthy).
    func sameAs(_ other: FleetHealthReport) -> Bool { signature == other.signature }

    private var signature: [String] {
        var parts = ["\(status.rawValue)", reasons.map(\.code).joined(separator: ","), "\(storeAvailable)", "\(localModeClients)",
            "\(replicasServing)/\(replicas)"]
        for r in registries {
            parts.append("\(r.name):\(r.status.rawValue):\(r.healthy):\(r.degraded):\(r.critical)")
            for b in r.breakers { parts.append("\(b.key):\(b.state.rawValue):\(b.status.rawValue):\(b.reasons.map(\.code).joined(separator: ","))") }
        }
        return parts
    }
}

/// The thresholds of the fleet health report (docs/ALERTS.md, "Fleet health").
public enum FleetHealthThresholds {
    /// A window with at least this many calls has an error rate worth judging.
    public static let minimumCalls = 20
    /// Failure rate from which a breaker is degraded (the seeds' 5 %)…
    public static let degradedErrorRate = 0.05
    /// …and critical.
    public static let criticalErrorRate = 0.5
    /// This many trips within `flappingWindowMs` is flapping (degraded).
    public static let flappingTrips = 3
    public static let flappingWindowMs: Int64 = 600_000
}

extension FleetHealthReport {
    /// Judges the fleet from what the monitor sees.
    static func evaluate(
        _ fleet: FleetObservation, registry filter: String, replicasServing: Int, replicas: Int, answeredBy: String
    ) -> FleetHealthReport {
        var registries: [String: Registry] = [:]
        for b in fleet.breakers where filter.isEmpty || b.registry == filter {
            var reasons: [FleetHealthReason] = []
            let since = b.notPassingSinceMs.map { " for \(AlertEngine.durationText(fleet.atMs - $0))" } ?? ""
            switch b.state {
            case .open: reasons.append(.init(code: "breaker_open", status: .critical, message: "OPEN\(since)"))
            case .forcedOpen: reasons.append(.init(code: "breaker_forced_open", status: .critical, message: "FORCED_OPEN by an operator\(since)"))
            case .halfOpen: reasons.append(.init(code: "breaker_half_open", status: .degraded, message: "HALF_OPEN: probing\(since)"))
            default: break
            }
            if b.calls >= FleetHealthThresholds.minimumCalls, b.failureRate >= FleetHealthThresholds.degradedErrorRate {
                let status: FleetHealthStatus = b.failureRate >= FleetHealthThresholds.criticalErrorRate ? .critical : .degraded
                reasons.append(.init(code: "error_rate", status: status, message: "\(b.failures) of \(b.calls) calls failed in the window"))
            }
            let trips = b.tripsAtMs.filter { fleet.atMs - $0 <= FleetHealthThresholds.flappingWindowMs }.count
            if trips >= FleetHealthThresholds.flappingTrips {
                reasons.append(.init(code: "flapping", status: .degraded, message: "tripped \(trips) times in 10 min"))
            }
            let status = reasons.map(\.status).max() ?? .healthy
            var r = registries[b.registry] ?? Registry(name: b.registry, status: .healthy)
            switch status {
            case .healthy: r.healthy += 1
            case .degraded: r.degraded += 1
            case .critical: r.critical += 1
            }
            r.status = max(r.status, status)
            if status != .healthy {
                r.breakers.append(Breaker(
                    key: BreakerKey(registry: b.registry, name: b.name), state: b.state, status: status, reasons: reasons, calls: b.calls,
                    failures: b.failures, recentTrips: trips, notPassingSinceMs: b.notPassingSinceMs))
            }
            registries[b.registry] = r
        }
        var fleetReasons: [FleetHealthReason] = []
        if !fleet.storeAvailable {
            fleetReasons.append(.init(code: "store_unavailable", status: .critical, message: fleet.storeProblem.isEmpty ? "the store is unavailable" : fleet.storeProblem))
        }
        if replicasServing < replicas {
            fleetReasons.append(.init(code: "replica_not_serving", status: .degraded, message: "\(replicas - replicasServing) of \(replicas) replicas not serving"))
        }
        if fleet.localModeClients > 0 {
            fleetReasons.append(.init(code: "local_mode_clients", status: .degraded, message: "\(fleet.localModeClients) clients run their breakers locally"))
        }
        var list = registries.values.sorted { $0.name < $1.name }
        for i in list.indices {
            list[i].breakers.sort { $0.status != $1.status ? $0.status > $1.status : $0.key < $1.key }
        }
        let status = (fleetReasons.map(\.status) + list.map(\.status)).max() ?? .healthy
        return FleetHealthReport(
            status: status, reasons: fleetReasons, registries: list, localModeClients: fleet.localModeClients, storeAvailable: fleet.storeAvailable,
            replicasServing: replicasServing, replicas: replicas, atMs: fleet.atMs, answeredBy: answeredBy)
    }
}
