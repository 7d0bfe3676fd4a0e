import FuseboxAPI
import FuseboxAuthority
import FuseboxCore
import FuseboxWire

/// How policies, breaker rules and audit entries are encoded at rest, in
/// SQLite and in etcd alike: as their `fusebox.v1` messages, so that a
/// stored value reads back through the same validation as one from the wire.
enum StoredCoding {
    static func encodePolicy(_ policy: Policy) throws(StoreError) -> [UInt8] {
        do { return try PolicyMapping.wire(policy).encode() } catch { throw StoreError(.internal, "cannot encode policy \(policy.name): \(error)") }
    }

    static func decodePolicy(_ bytes: [UInt8]) throws(StoreError) -> Policy {
        let wire: Fusebox_V1_Policy
        do { wire = try Fusebox_V1_Policy(decoding: bytes) } catch { throw StoreError(.corrupt, "a stored policy does not decode: \(error)") }
        switch PolicyMapping.policy(from: wire) {
        case .success(let policy): return policy
        case .failure(let error): throw StoreError(.corrupt, "a stored policy no longer converts: \(error)")
        }
    }

    /// A breaker's rule, stored as a policy holding only it.
    static func encodeRule(_ rule: CircuitBreakerPolicy) throws(StoreError) -> [UInt8] {
        var policy = Policy(name: "rule")
        policy.circuitBreaker = rule
        return try encodePolicy(policy)
    }

    static func decodeRule(_ bytes: [UInt8]) throws(StoreError) -> CircuitBreakerPolicy? {
        try decodePolicy(bytes).circuitBreaker
    }

    static func encodeAudit(_ entry: AuditRecord) throws(StoreError) -> [UInt8] {
        do { return try WireConversions.audit(entry).encode() } catch { throw StoreError(.internal, "cannot encode audit entry: \(error)") }
    }

    static func decodeAudit(_ bytes: [UInt8], id: UInt64) throws(StoreError) -> AuditRecord {
        do {
            var entry = try WireConversions.audit(Fusebox_V1_AuditEntry(decoding: bytes))
            entry.id = id
            return entry
        } catch {
            throw StoreError(.corrupt, "audit entry \(id) does not decode: \(error)")
        }
    }

    /// An override from the name of the state it imposes (`BreakerState`'s raw value), as stored.
    static func override(stateName: String?) -> BreakerOverride? {
        switch stateName.flatMap(BreakerState.init(rawValue:)) {
        case .forcedOpen: .forcedOpen
        case .forcedClosed: .forcedClosed
        case .disabled: .disabled
        case .shadow: .shadow
        default: nil
        }
    }
}
