/// The probe permits of one HALF_OPEN period: at most `limit` outstanding,
/// each expiring after `maxWaitMs`.
public struct HalfOpenPermits: Sendable, Hashable {
    /// Outstanding permits by id, with their expiry.
    public private(set) var outstanding: [UInt64: Timestamp] = [:]
    /// Successful probes so far.
    public private(set) var successes = 0
    private var issued: UInt64 = 0

    /// No permits.
    public init() {}

    /// Grants a permit if fewer than `limit` are outstanding. Ids embed the
    /// generation, so a permit of an earlier half-open period never matches.
    public mutating func grant(
        generation: BreakerGeneration, limit: Int, maxWaitMs: Int64, at now: Timestamp
    ) -> PermitGrant? {
        guard outstanding.count < max(limit, 1) else { return nil }
        issued += 1
        let id = (generation.value << 24) | (issued & 0xFF_FFFF)
        let expiry = now.adding(milliseconds: max(maxWaitMs, 1))
        outstanding[id] = expiry
        return PermitGrant(id: id, generation: generation, expiresAt: expiry)
    }

    /// Ends a permit. Returns false for an unknown or expired permit (a late
    /// result, which is ignored).
    public mutating func complete(_ id: UInt64) -> Bool {
        outstanding.removeValue(forKey: id) != nil
    }

    /// Counts one successful probe.
    public mutating func recordSuccess(_ count: Int = 1) {
        successes += count
    }

    /// Removes and returns the permits expired at `now`.
    public mutating func expire(at now: Timestamp) -> [UInt64] {
        let expired = outstanding.filter { $0.value <= now }.map(\.key).sorted()
        for id in expired { outstanding[id] = nil }
        return expired
    }

    /// The earliest expiry of an outstanding permit.
    public var nextExpiry: Timestamp? { outstanding.values.min() }
}

/// A granted half-open probe permit.
public struct PermitGrant: Sendable, Hashable {
    /// Identifies the permit in the probe's result.
    public var id: UInt64
    /// The breaker generation it was granted under.
    public var generation: BreakerGeneration
    /// When it expires as a failed probe.
    public var expiresAt: Timestamp
}

/// A refused permit.
public struct PermitDenial: Sendable, Hashable {
    /// The breaker's state.
    public var state: BreakerState
    /// The breaker's generation.
    public var generation: BreakerGeneration
    /// When to ask again, if known.
    public var retryAfterMs: Int64?
    /// Why, for people.
    public var reason: String

    /// A denial.
    public init(state: BreakerState, generation: BreakerGeneration, retryAfterMs: Int64?, reason: String) {
        self.state = state
        self.generation = generation
        self.retryAfterMs = retryAfterMs
        self.reason = reason
    }
}

/// The answer to a permit request.
public enum PermitDecision: Sendable, Hashable {
    /// A probe may run.
    case granted(PermitGrant)
    /// No probe may run now.
    case denied(PermitDenial)
}
