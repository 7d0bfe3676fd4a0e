import FuseboxCore
import FuseboxRPC
import FuseboxTLS
import FuseboxWire

/// Writes audit entries: every admin action and every denied attempt, with
/// the caller's identity.
public struct AuditLog: Sendable {
    let store: any FuseboxStore
    let clock: @Sendable () -> Int64

    /// Records an entry; returns its id.
    @discardableResult
    func record(
        _ action: Fusebox_V1_AuditAction, peer: TLSPeerIdentity?, breaker: (registry: String, name: String)? = nil,
        policy: String = "", reason: String, allowed: Bool, deniedReason: String = "",
        before: BreakerState? = nil, after: BreakerState? = nil, durationMs: UInt32 = 0
    ) async throws(StoreError) -> UInt64 {
        var entry = Fusebox_V1_AuditEntry()
        entry.atMs = clock()
        entry.actor = peer.map(WireConversions.peer)
        entry.action = action
        if let breaker { entry.breaker = WireConversions.ref(breaker.registry, breaker.name) }
        entry.policy = policy
        entry.reason = reason
        entry.allowed = allowed
        entry.deniedReason = deniedReason
        entry.stateBefore = before.map(WireConversions.state) ?? .unspecified
        entry.stateAfter = after.map(WireConversions.state) ?? .unspecified
        entry.durationMs = durationMs
        return try await store.appendAudit(entry)
    }
}
