import Foundation
public import FuseboxAuthority
public import FuseboxCore

/// What the web dashboard (or any other operator front end in this process)
/// reads and does through the server. Actions follow the same rules, audit
/// entries and limits as `AdminService`; who may read what is the front
/// end's to decide (the dashboard lets readers read the audit log).
extension FuseboxServerApp {
    /// An operator's action on a breaker.
    public enum OperatorAction: String, Sendable, CaseIterable {
        case forceOpen = "force_open", forceClose = "force_close", disable, shadow, reset

        /// The audit log's name for it.
        public var auditAction: AuditAction {
            switch self {
            case .forceOpen: return .forceOpen
            case .forceClose: return .forceClose
            case .disable: return .disable
            case .shadow: return .shadow
            case .reset: return .reset
            }
        }

        var override: BreakerOverride? {
            switch self {
            case .forceOpen: return .forcedOpen
            case .forceClose: return .forcedClosed
            case .disable: return .disabled
            case .shadow: return .shadow
            case .reset: return nil
            }
        }
    }

    /// Applies `action` to the breaker `key` for `actor`, durable together with
    /// its audit entry (as `AdminService` does). Throws `invalidArgument` for a
    /// reason over 1,024 bytes or a ForceOpen without one, `notFound` for a
    /// breaker the fleet does not know, and `unavailable` when the store
    /// refused the write or, replicated, this replica does not decide.
    public func operatorAction(
        _ action: OperatorAction, on key: BreakerKey, reason: String, durationMs: UInt32, actor: AuditActor
    ) async throws(CoordinatorError) -> AdminOutcome {
        guard reason.utf8.count <= 1_024 else {
            throw CoordinatorError(.invalidArgument, "reason is \(reason.utf8.count) bytes; at most 1024 are allowed", field: "reason")
        }
        if action == .forceOpen, reason.trimmingCharacters(in: .whitespaces).isEmpty {
            throw CoordinatorError(.invalidArgument, "reason is required for force_open; say why, for the audit log", field: "reason")
        }
        if let replica, leadingCoordinator == nil {
            let leader: String
            switch replica.role {
            case .follower(let id, let address): leader = "replica \(id) at \(address)"
            default: leader = "no replica right now"
            }
            throw CoordinatorError(
                .unavailable, "this replica does not decide breakers (the leader is \(leader)); act from the leader's dashboard or with the fusebox CLI")
        }
        guard authority.detail(key) != nil else { throw CoordinatorError(.notFound, "no breaker \(key) is known to the fleet") }
        let record = AuditRecord(
            atMs: clockNow(), actor: actor, action: action.auditAction, breaker: key, reason: reason, allowed: true,
            durationMs: action == .reset ? 0 : durationMs)
        if let kind = action.override {
            return try await authority.setOverride(key, kind, durationMs: durationMs, reason: reason, policy: nil, audit: record)
        }
        return try await authority.reset(key, reason: reason.isEmpty ? "reset" : reason, audit: record)
    }

    /// Writes an audit entry on its own (a refused operator request, an
    /// allowed read); a failure is logged and counted, as for the gRPC services.
    public func appendAuditEntry(_ record: AuditRecord) async {
        await audit.append(record)
    }

    /// The audit log, newest first (at most `query.limit + 1` entries).
    public func listAudit(_ query: AuditQuery) async throws(StoreError) -> [AuditRecord] {
        try await audit.store.listAudit(query)
    }

    /// The clients that report outcomes, most recently heard first; `complete`
    /// is false where this process does not decide (a follower replica), which
    /// then knows none.
    public func reportingClients(limit: Int = 10_000) -> (complete: Bool, clients: [ReporterLedger.ClientView]) {
        guard let coordinator = leadingCoordinator else { return (false, []) }
        return (true, coordinator.clients(limit: limit))
    }

    /// Every breaker's window counts now, where this process decides (empty on a follower).
    public func windowCounts() -> [BreakerKey: OutcomeCounts] {
        leadingCoordinator?.windowCounts() ?? [:]
    }

    /// The fleet's health now, for `registry` ("" for all).
    public func fleetHealth(registry: String = "") -> FleetHealthReport {
        monitor.health(registry: registry)
    }

    /// The name this server answers as (the replica id, or the host's).
    public var answeredBy: String { monitor.sources.answeredBy }

    /// The authority's clock.
    public var clock: any FleetClock { audit.clock }

    private func clockNow() -> Int64 { audit.clock.now().milliseconds }
}
