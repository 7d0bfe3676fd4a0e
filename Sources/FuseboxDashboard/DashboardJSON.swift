import FuseboxAuthority
import FuseboxCore
import FuseboxServer

/// The JSON the API answers with (docs/DASHBOARD.md), made from domain values.
enum DashboardJSON {
    struct Override: Encodable {
        var kind: String
        var untilMs: Int64?
        var reason: String
    }

    struct Breaker: Encodable {
        var registry: String
        var name: String
        var policy: String
        var state: String
        var evaluatedState: String
        var generation: UInt64
        var sinceMs: Int64
        var untilMs: Int64?
        var reason: String
        var override: Override?
        var calls: UInt64
        var failures: UInt64
        var errorRate: Double
        var spark: [Double]
    }

    struct Window: Encodable {
        var calls: UInt64
        var failures: UInt64
        var slow: UInt64
        var errorRate: Double
        var slowRate: Double
    }

    static func calls(_ c: OutcomeCounts) -> UInt64 { c.success &+ c.failure &+ c.slowSuccess &+ c.slowFailure }
    static func failures(_ c: OutcomeCounts) -> UInt64 { c.failure &+ c.slowFailure }

    /// A percentage with one decimal (0 without calls).
    static func percent(_ part: UInt64, of whole: UInt64) -> Double {
        guard whole > 0 else { return 0 }
        return (Double(part) * 1_000 / Double(whole)).rounded() / 10
    }

    static func window(_ c: OutcomeCounts) -> Window {
        let calls = calls(c)
        let slow = c.slowSuccess &+ c.slowFailure
        return Window(calls: calls, failures: failures(c), slow: slow, errorRate: percent(failures(c), of: calls), slowRate: percent(slow, of: calls))
    }

    static func breaker(_ view: BreakerView, counts: OutcomeCounts?, spark: [Double]) -> Breaker {
        let s = view.status
        var override: Override?
        switch s.state {
        case .forcedOpen, .forcedClosed, .disabled, .shadow:
            override = Override(kind: s.state.displayName, untilMs: s.until?.milliseconds, reason: s.reason)
        default:
            break
        }
        let c = counts ?? OutcomeCounts()
        return Breaker(
            registry: view.key.registry, name: view.key.name, policy: view.policy, state: s.state.displayName,
            evaluatedState: s.evaluatedState.displayName, generation: s.generation.value, sinceMs: s.since.milliseconds,
            untilMs: s.until?.milliseconds, reason: s.reason, override: override, calls: calls(c), failures: failures(c),
            errorRate: percent(failures(c), of: calls(c)), spark: spark)
    }

    // MARK: Audit

    struct AuditEntry: Encodable {
        var id: UInt64
        var atMs: Int64
        var actor: String
        var roles: [String]
        var action: String
        var registry: String
        var breaker: String
        var policy: String
        var reason: String
        var durationMs: UInt32
        var allowed: Bool
        var deniedReason: String
    }

    static let auditNames: [(AuditAction, String)] = [
        (.forceOpen, "FORCE_OPEN"), (.forceClose, "FORCE_CLOSE"), (.disable, "DISABLE"), (.shadow, "SHADOW"), (.reset, "RESET"),
        (.overrideExpired, "OVERRIDE_EXPIRED"), (.putPolicy, "PUT_POLICY"), (.deletePolicy, "DELETE_POLICY"),
        (.connectionRefused, "CONNECTION_REFUSED"), (.listAudit, "LIST_AUDIT"), (.getClusterStatus, "GET_CLUSTER_STATUS"),
    ]

    static func auditName(_ action: AuditAction) -> String { auditNames.first { $0.0 == action }?.1 ?? "\(action)" }

    static func auditAction(named name: String) -> AuditAction? { auditNames.first { $0.1 == name.uppercased() }?.0 }

    static func audit(_ r: AuditRecord) -> AuditEntry {
        let actor = r.actor.map { a in
            !a.commonName.isEmpty ? a.commonName : (a.dnsNames.first ?? a.uris.first ?? (a.fingerprintSHA256.isEmpty ? "" : "sha256:" + a.fingerprintSHA256))
        } ?? ""
        return AuditEntry(
            id: r.id, atMs: r.atMs, actor: actor, roles: r.actor?.roles ?? [], action: auditName(r.action),
            registry: r.breaker?.registry ?? "", breaker: r.breaker?.name ?? "", policy: r.policy, reason: r.reason,
            durationMs: r.durationMs, allowed: r.allowed, deniedReason: r.deniedReason)
    }

    // MARK: Health

    struct Reason: Encodable {
        var code: String
        var status: String
        var message: String
    }

    struct HealthBreaker: Encodable {
        var name: String
        var state: String
        var status: String
        var reasons: [Reason]
        var calls: Int
        var failures: Int
        var recentTrips: Int
        var notPassingSinceMs: Int64?
    }

    struct HealthRegistry: Encodable {
        var name: String
        var status: String
        var healthy: Int
        var degraded: Int
        var critical: Int
        var breakers: [HealthBreaker]
    }

    struct Health: Encodable {
        var status: String
        var reasons: [Reason]
        var registries: [HealthRegistry]
        var localModeClients: Int
        var storeAvailable: Bool
        var replicasServing: Int
        var replicas: Int
        var atMs: Int64
        var answeredBy: String
    }

    static func health(_ h: FleetHealthReport) -> Health {
        func reasons(_ list: [FleetHealthReason]) -> [Reason] { list.map { Reason(code: $0.code, status: $0.status.name, message: $0.message) } }
        return Health(
            status: h.status.name, reasons: reasons(h.reasons),
            registries: h.registries.map { r in
                HealthRegistry(
                    name: r.name, status: r.status.name, healthy: r.healthy, degraded: r.degraded, critical: r.critical,
                    breakers: r.breakers.map { b in
                        HealthBreaker(
                            name: b.key.name, state: b.state.displayName, status: b.status.name, reasons: reasons(b.reasons), calls: b.calls,
                            failures: b.failures, recentTrips: b.recentTrips, notPassingSinceMs: b.notPassingSinceMs)
                    })
            },
            localModeClients: h.localModeClients, storeAvailable: h.storeAvailable, replicasServing: h.replicasServing,
            replicas: h.replicas, atMs: h.atMs, answeredBy: h.answeredBy)
    }
}
